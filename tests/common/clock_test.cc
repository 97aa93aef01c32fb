#include "common/clock.h"

#include <gtest/gtest.h>

namespace taproot {
namespace {

TEST(ClockTest, ParsesEveryPrecision) {
  // Expected values from `date -u -d ... +%s`.
  EXPECT_EQ(*ParseFhirDateTime("2020"), 1577836800LL * 1000000);
  EXPECT_EQ(*ParseFhirDateTime("2020-03"), 1583020800LL * 1000000);
  EXPECT_EQ(*ParseFhirDateTime("2020-03-15"), 1584230400LL * 1000000);
  EXPECT_EQ(*ParseFhirDateTime("2020-03-15T10:20:30Z"), 1584267630LL * 1000000);
  EXPECT_EQ(*ParseFhirDateTime("2020-03-15T10:20:30.5Z"), 1584267630LL * 1000000 + 500000);
  EXPECT_EQ(*ParseFhirDateTime("2020-03-15T12:20:30+02:00"), 1584267630LL * 1000000);
}

TEST(ClockTest, RejectsMalformed) {
  for (const char* bad :
       {"", "20", "2020-13", "2020-01-32", "2020-01-01T10:00", "2020-01-01T10:00:00",
        "2020-01-01T25:00:00Z", "yesterday", "2020-01-01Z"}) {
    EXPECT_FALSE(ParseFhirDateTime(bad).ok()) << bad;
  }
}

TEST(ClockTest, FormatsInstantsThatParseBack) {
  int64_t t = 1584267630LL * 1000000 + 123456;
  EXPECT_EQ(FormatInstant(t), "2020-03-15T10:20:30.123456Z");
  EXPECT_EQ(*ParseFhirDateTime(FormatInstant(t)), t);
  EXPECT_EQ(FormatHttpDate(t), "Sun, 15 Mar 2020 10:20:30 GMT");
}

}  // namespace
}  // namespace taproot
