// SPDX-License-Identifier: GPL-3.0-or-later
//
// Runs a fuzz target's LLVMFuzzerTestOneInput over every file of its corpus, so that the
// ordinary (g++) build checks each seed and each regression input as a test (suite fuzz).
// Built only when the fuzz targets are not linked with libFuzzer (which brings its own main).
//
// Usage: fuzz_<name> DIR|FILE...       Output: TAP, one line per corpus directory or file.
// A target signals a failed property by aborting; the handler below names the input first.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

// The input being run, for the crash handler (a fixed buffer: the handler may not allocate).
char g_current[4096];

void on_crash(int sig) {
    const char* what = "# crashed on input: ";
    ssize_t ignored = write(2, what, std::strlen(what));
    ignored = write(2, g_current, std::strlen(g_current));
    ignored = write(2, "\n", 1);
    (void)ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

bool read_file(const std::string& path, std::vector<std::uint8_t>& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return !in.bad();
}

// The regular files of `dir`, sorted (a stable order makes a failure reproducible).
bool list_dir(const std::string& dir, std::vector<std::string>& files) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return false;
    while (dirent* e = readdir(d)) {
        std::string path = dir + "/" + e->d_name;
        struct stat st{};
        if (e->d_name[0] != '.' && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) files.push_back(path);
    }
    closedir(d);
    std::sort(files.begin(), files.end());
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR|FILE...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, on_crash);
    std::printf("1..%d\n", argc - 1);
    int failed = 0;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        std::vector<std::string> files;
        struct stat st{};
        bool listed = stat(arg.c_str(), &st) == 0 && S_ISDIR(st.st_mode) ? list_dir(arg, files)
                                                                           : (files.push_back(arg), true);
        std::size_t ran = 0, bytes = 0;
        std::string problem;
        if (!listed) problem = "cannot list " + arg;
        for (const auto& f : files) {
            std::vector<std::uint8_t> data;
            if (!read_file(f, data)) {
                problem = "cannot read " + f;
                break;
            }
            std::snprintf(g_current, sizeof g_current, "%s", f.c_str());
            // A copy of exactly the input's size, so a read past its end is a read past a heap block.
            auto* copy = new std::uint8_t[data.size() + (data.empty() ? 1 : 0)];
            std::copy(data.begin(), data.end(), copy);
            LLVMFuzzerTestOneInput(copy, data.size());
            delete[] copy;
            ++ran;
            bytes += data.size();
        }
        if (problem.empty() && ran == 0) problem = "no inputs in " + arg;
        if (problem.empty()) {
            std::printf("ok %d - %zu inputs (%zu bytes) from %s\n", i, ran, bytes, arg.c_str());
        } else {
            std::printf("not ok %d - %s\n", i, problem.c_str());
            failed = 1;
        }
    }
    return failed;
}
