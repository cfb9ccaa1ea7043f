// The outbound connection's deadline (issue 8.5): its handler held a raw `this`. A
// handler that outlives the connection must find nothing, and one that belongs to an
// earlier arm() must not time out the current operation.
#include <gtest/gtest.h>

#include <thread>

#include "delivery/outbound.hpp"

using namespace bulwark;

TEST(OutboundDeadline, AHandlerThatOutlivesItsConnectionDoesNothing) {
  asio::io_context io;
  {
    auto c = std::make_shared<Outbound::Conn>(io, smtp::ClientSettings{"out.test", smtp::ClientTls::off, "", ""});
    c->arm(std::chrono::seconds(0));  // expires at once: its handler is queued
    io.poll();                        // ...and may already have fired in the queue
  }
  io.restart();
  io.run();  // runs whatever is left after the connection is gone (ASan: no use after free)
  SUCCEED();
}

TEST(OutboundDeadline, AnEarlierDeadlineThatFiredLateIsIgnored) {
  asio::io_context io;
  auto c = std::make_shared<Outbound::Conn>(io, smtp::ClientSettings{"out.test", smtp::ClientTls::off, "", ""});
  c->arm(std::chrono::seconds(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // expired; its handler not run yet
  // The next operation starts in a handler that runs in the same turn of the loop as
  // the expired timer's completion (a read that finished at the same moment): the
  // stale completion is already queued and cannot be cancelled any more.
  asio::post(io, [c] { c->arm(std::chrono::seconds(30)); });
  io.run_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(c->timed_out) << "a stale deadline timed out the next operation";
}
