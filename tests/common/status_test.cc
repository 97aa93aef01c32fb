#include "common/status.h"

#include <gtest/gtest.h>

namespace taproot {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::Invalid("odd", "x");
  return x / 2;
}

Status UseHalf(int x, int* out) {
  ASSIGN_OR_RETURN(*out, Half(x));
  return Status::Ok();
}

TEST(StatusTest, OkIsCheapAndEmpty) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_TRUE(s.issues().empty());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, CarriesCodeMessageAndLocation) {
  Status s = Status::Invalid("bad date", "Patient.birthDate");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalid);
  EXPECT_EQ(s.message(), "bad date");
  ASSERT_EQ(s.issues().size(), 1u);
  EXPECT_EQ(s.issues()[0].expression, "Patient.birthDate");
  EXPECT_EQ(s.Annotate("entry 3: ").message(), "entry 3: bad date");
  EXPECT_EQ(s.message(), "bad date");  // Annotate returns a copy
}

TEST(StatusTest, ResultPropagates) {
  int v = 0;
  EXPECT_TRUE(UseHalf(8, &v).ok());
  EXPECT_EQ(v, 4);
  Status st = UseHalf(7, &v);
  EXPECT_EQ(st.code(), StatusCode::kInvalid);
  EXPECT_EQ(st.message(), "odd");
}

}  // namespace
}  // namespace taproot
