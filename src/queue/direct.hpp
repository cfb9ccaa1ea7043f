// queue/direct.hpp: write-once local delivery. A message whose recipients are all
// local is written at its commit straight into each recipient's mailbox -- the copies
// in tmp/, synced with the spool's batch, renamed into new/, synced again -- and only
// then acknowledged: no spool file, no second write, no unlink. The spool's committer
// asks for it per message; the delivery side (delivery/local.cpp) writes. When any
// copy cannot be written (a mailbox that cannot be created, a full disk) nothing of the
// message is left in the mailboxes and it takes the spool's way, where local delivery
// retries and bounces as for any message.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "smtp/session.hpp"

namespace bulwark {

struct DirectCopy {
  std::string target;      // the mailbox key
  std::string tmp;         // written here, not yet synced
  std::string final_path;  // renamed here at the commit
  uint64_t size = 0;
};

class DirectDelivery {
 public:
  virtual ~DirectDelivery() = default;
  // Every local copy of `tx` written into its mailbox's tmp/ (not synced). False when
  // the message cannot be written this way (a recipient not local, a copy that failed):
  // then nothing of it is left behind.
  virtual bool write(const smtp::Transaction& tx, std::vector<DirectCopy>& out) = 0;
  // Makes the mailboxes' writes durable when they are on another filesystem than
  // `spool_fd`'s (whose syncfs the spool makes anyway): 0, or -1 with errno.
  virtual int sync_mailboxes(int spool_fd) = 0;
  // The copies are in new/ and durable, the message acknowledged: mail.log, metrics.
  virtual void delivered(const smtp::Transaction& tx, const std::vector<DirectCopy>& copies) = 0;
};

}  // namespace bulwark
