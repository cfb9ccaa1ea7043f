// crypt/convert.hpp: turning a data dir and its logs from plain to sealed or back
// (the engine of `encryption enable` / `disable`, SPEC 13), one file at a time, so that
// an interruption at any point -- kill -9, power loss -- leaves every file whole in
// one form or the other, and running it again finishes the job.
//
// Per file: its plaintext is read through the seam (either form), written in the
// target form to "<file>.bwconv" beside it (the original's mode, owner and times),
// synced, renamed over the original; each directory is synced after its renames.
// A file already in the target form is left alone, which is what makes it resumable
// without a list of what was done. Leftover ".bwconv" files of an interrupted run are
// removed first. Runs with the server stopped: the server's own appends (queue state,
// indexes) are serialised inside its process.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "crypt/crypt.hpp"

namespace bulwark::crypt {

// How a file is sealed, by its path relative to the data dir (or the log dir).
enum class Form { whole, records, left };  // left: not secret, transient, or done elsewhere (the directory)
Form form_of(const std::string& relative, bool in_log_dir);

struct Progress {
  size_t converted = 0;  // turned this run
  size_t already = 0;    // found in the target form
  size_t total = 0;      // covered files seen
  uint64_t bytes = 0;    // size on disk of the files turned this run
  std::vector<std::string> failed;  // "path: why" -- left as they were
};

// Converts the covered files of `data_dir` and `log_dir` to sealed (`to_sealed`) or
// plain; `key` reads sealed files and seals. `stop_after`: stop once that many files
// were converted (tests: an interruption).
Progress convert(const std::string& data_dir, const std::string& log_dir, const DataKey& key, bool to_sealed,
                 size_t stop_after = SIZE_MAX);

// What `convert` would find, without touching anything (`encryption status`): total
// and already (in the target form).
Progress survey(const std::string& data_dir, const std::string& log_dir, bool to_sealed);

}  // namespace bulwark::crypt
