// core/: vocabulary types shared by every other folder (addresses, sizes,
// durations, small string helpers). Depends on the C++ standard library only, so
// the protocol parsers built on it can be fuzzed and unit-tested in isolation.
#pragma once
#include "address.hpp"
#include "strings.hpp"
#include "units.hpp"
