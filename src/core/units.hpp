#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark {

// "10MB", "512KB", "1GB", "1024" (bytes). 1024-based. nullopt when malformed.
std::optional<uint64_t> parse_size(std::string_view s);
// "30s", "5m", "1h", "2d", "0". nullopt when malformed.
std::optional<std::chrono::seconds> parse_duration(std::string_view s);

}  // namespace bulwark
