// Replays fuzz inputs through a libFuzzer harness without libFuzzer: main() calls the harness's
// LLVMFuzzerTestOneInput once per file of the directories (or files) named on the command line, so the
// seed corpora (tests/fuzz/corpus*) run as ordinary tests in every build, including the aarch64 one
// under qemu-aarch64 (tests/cpp/CMakeLists.txt: fuzz_replay_*), where libFuzzer is not available.
// A harness reports a violated invariant by aborting, which fails the test.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    std::vector<fs::path> files;
    for (int i = 1; i < argc; ++i) {
        const fs::path p(argv[i]);
        if (fs::is_directory(p)) {
            for (const auto& e : fs::directory_iterator(p))
                if (e.is_regular_file()) files.push_back(e.path());
        } else {
            files.push_back(p);
        }
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        std::fprintf(stderr, "fuzz_replay: no inputs\n");
        return 1;
    }
    for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        const std::vector<char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::printf("%s (%zu bytes)\n", f.filename().string().c_str(), buf.size());
        std::fflush(stdout);
        LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(buf.data()), buf.size());
    }
    std::printf("fuzz_replay: %zu inputs, no invariant violated\n", files.size());
    return 0;
}
