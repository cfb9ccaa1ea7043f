// The admin listener's HTTP/1.1 parser and response writer (http/).
#include <gtest/gtest.h>

#include "http/http.hpp"

using namespace bulwark;

TEST(HttpParser, PipelinedRequestsSplitAnywhere) {
  std::string in =
      "POST /api/v1/domains?x=1&name=a%40b+c HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: 17\r\nX-A: 1\r\nx-a: 2\r\n\r\n{\"name\":\"a.test\"}"
      "PUT /api/v1/users/a%40b/password HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
      "GET / HTTP/1.0\r\n\r\n";
  for (size_t step : {size_t(1), size_t(7), in.size()}) {
    http::Parser p;
    std::vector<http::Request> got;
    for (size_t i = 0; i < in.size(); i += step) {
      ASSERT_TRUE(p.feed(std::string_view(in).substr(i, step))) << p.error();
      while (auto r = p.next()) got.push_back(*r);
    }
    ASSERT_EQ(got.size(), 3u) << step;
    EXPECT_EQ(got[0].method, "POST");
    EXPECT_EQ(got[0].path, "/api/v1/domains");
    EXPECT_EQ(got[0].param("name"), "a@b c");
    EXPECT_EQ(got[0].param("x"), "1");
    EXPECT_EQ(got[0].param("none"), "");
    EXPECT_EQ(got[0].header("content-type"), "application/json");
    EXPECT_EQ(got[0].header("x-a"), "1, 2");
    EXPECT_EQ(got[0].body, "{\"name\":\"a.test\"}");
    EXPECT_TRUE(got[0].keep_alive);
    EXPECT_EQ(got[1].path, "/api/v1/users/a@b/password");
    EXPECT_EQ(got[1].body, "hello");
    EXPECT_EQ(got[2].method, "GET");
    EXPECT_FALSE(got[2].keep_alive);  // HTTP/1.0 without keep-alive
  }
}

TEST(HttpParser, BoundsAndBadRequestsGiveTheirStatus) {
  http::Limits lim;
  lim.max_header = 1024;
  lim.max_body = 100;
  struct Case {
    std::string in;
    int status;
  } cases[] = {
      {"GET /" + std::string(2000, 'a') + " HTTP/1.1\r\n\r\n", 414},
      {"GET / HTTP/1.1\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", 431},
      {"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + std::string(101, 'x') + "\r\n0\r\n\r\n", 413},
      {"BREW / HTTP/1.1\r\n\r\n", 400},
      {"OPTIONS / HTTP/1.1\r\n\r\n", 501},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET /a%00b HTTP/1.1\r\n\r\n", 400},
      {"GET http://x/ HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 400},
      {"garbage\r\n\r\n", 400},
  };
  for (auto& c : cases) {
    http::Parser p(lim);
    EXPECT_FALSE(p.feed(c.in)) << c.in.substr(0, 40);
    EXPECT_EQ(p.error_status(), c.status) << c.in.substr(0, 40);
    EXPECT_FALSE(p.next()) << c.in.substr(0, 40);
    EXPECT_FALSE(p.feed("GET / HTTP/1.1\r\n\r\n"));  // stays failed
  }
}

TEST(HttpResponse, CarriesTheSecurityHeadersAndLength) {
  http::Response r;
  r.status = 201;
  r.body = "{\"a\":1}";
  r.headers.emplace_back("Set-Cookie", "s=1; Secure");
  r.close = true;
  std::string w = r.wire();
  EXPECT_EQ(w.substr(0, w.find("\r\n")), "HTTP/1.1 201 Created");
  for (const char* h : {"Content-Length: 7\r\n", "Strict-Transport-Security: max-age=31536000\r\n",
                        "X-Content-Type-Options: nosniff\r\n", "Cache-Control: no-store\r\n", "Set-Cookie: s=1; Secure\r\n",
                        "Connection: close\r\n", "frame-ancestors 'none'"})
    EXPECT_NE(w.find(h), std::string::npos) << h;
  EXPECT_EQ(w.substr(w.size() - 7), "{\"a\":1}");
}
