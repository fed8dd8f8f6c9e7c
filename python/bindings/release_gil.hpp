// The GIL guard of every binding that releases the GIL (_core and _probe).
#pragma once

#include <pybind11/pybind11.h>

#if defined(__GLIBCXX__)
#include <cxxabi.h>
#endif
#include <chrono>
#include <thread>

// Releases the GIL for its scope, like pybind11::gil_scoped_release, and survives interpreter exit. At
// exit CPython (before 3.14) ends a daemon thread that asks for the GIL back with pthread_exit, a forced
// unwind; pybind11's guard asks in a noexcept destructor, so that unwind called std::terminate (SIGABRT
// on exit whenever a daemon thread was inside a call). Here the unwind is caught and the thread parks
// until the process ends, as CPython 3.14 parks such threads itself. (Elsewhere, e.g. on Windows, CPython
// ends the thread without unwinding.)
class release_gil {
public:
    release_gil() : state_(PyEval_SaveThread()) {}
    release_gil(const release_gil&) = delete;
    release_gil& operator=(const release_gil&) = delete;
    ~release_gil() {
#if defined(__GLIBCXX__)
        try {
            PyEval_RestoreThread(state_);
        } catch (abi::__forced_unwind&) {
            for (;;) std::this_thread::sleep_for(std::chrono::hours(1));  // the process is exiting
        }
#else
        PyEval_RestoreThread(state_);
#endif
    }

private:
    PyThreadState* state_;
};
