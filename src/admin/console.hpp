// admin/console: the web console's files (src/admin/console/, embedded in the binary
// at build time by cmake/embed.cmake -- no CDN, no front-end build step), served by
// the admin listener at /, /console.js, /console.css.
#pragma once
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::admin {

// ("/index.html", bytes), ... for every file of src/admin/console/.
const std::vector<std::pair<std::string_view, std::string_view>>& console_files();

}  // namespace bulwark::admin
