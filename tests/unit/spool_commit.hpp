// Commits one message (in memory, or a body streamed to the spool's queue.tmp/) (a@remote.test -> demo@example.test, local) through a started
// Spool and waits for its fsync; returns the queue id.
#pragma once
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <string>

#include "queue/spool.hpp"

namespace bulwark::test {

inline std::string commit(Spool& spool, MessageBody body) {
  auto tx = std::make_shared<smtp::Transaction>();
  tx->envelope.id = spool.new_id();
  tx->envelope.sender = "a@remote.test";
  tx->envelope.recipients = {{"demo@example.test", "demo@example.test", true}};
  tx->received = "Received: test\r\n";
  tx->body = std::move(body);
  std::promise<bool> done;
  spool.submit(tx, [&done](bool ok) { done.set_value(ok); });
  EXPECT_TRUE(done.get_future().get());
  return tx->envelope.id;
}

inline std::string commit(Spool& spool, const std::string& text) { return commit(spool, MessageBody(text)); }

}  // namespace bulwark::test
