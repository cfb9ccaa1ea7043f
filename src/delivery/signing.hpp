// delivery/: DKIM signing of a queued message as remote delivery loads it (dkim/).
#pragma once
#include <string>

#include "dkim/dkim.hpp"
#include "queue/spool.hpp"

namespace bulwark {

// The DKIM-Signature fields for a message whose From: domain has a key, "" for none.
// Reads the content once more from the spool, in 64 KiB pieces (never whole); runs on
// a disk thread. A header over 1 MiB, a read error or a signing error: "" (the error
// is logged) -- the message then goes out unsigned rather than stuck.
std::string dkim_fields(Spool& spool, dkim::Signer& signer, const StoredMessage& m);

}  // namespace bulwark
