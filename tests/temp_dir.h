// A fresh directory from mkdtemp for tests that need real files (LMDB environments),
// removed with everything in it when the fixture goes out of scope.
#pragma once

#include "snapshot_writer.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace apikey::test {

class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "apikey-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;

    const std::filesystem::path &path() const { return path_; }
    std::string sub(const std::string &name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

inline snapshot::WriterOptions writer_options(const std::string &dir) {
    snapshot::WriterOptions options;
    options.dir = dir;
    return options;
}

}  // namespace apikey::test
