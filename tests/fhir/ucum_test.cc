// UCUM parsing and conversion. Expected values are the definitions in the UCUM specification
// (for example 1 [lb_av] = 453.59237 g, 1 mm[Hg] = 133.322 Pa, 0 Cel = 273.15 K), computed by
// hand here, not by the code under test.
#include "fhir/ucum.h"

#include <gtest/gtest.h>

namespace taproot::fhir::ucum {
namespace {

double C(double v, const char* from, const char* to) {
  auto r = Convert(v, from, to);
  EXPECT_TRUE(r.has_value()) << from << " -> " << to;
  return r.value_or(-12345);
}

TEST(UcumTest, PrefixesAndCommonClinicalUnits) {
  EXPECT_DOUBLE_EQ(C(1, "kg", "g"), 1000);
  EXPECT_DOUBLE_EQ(C(250, "mg", "g"), 0.25);
  EXPECT_DOUBLE_EQ(C(1, "ug", "ng"), 1000);
  EXPECT_DOUBLE_EQ(C(1, "[lb_av]", "g"), 453.59237);
  EXPECT_DOUBLE_EQ(C(14, "[stone_av]", "kg"), 88.90410452);
  EXPECT_DOUBLE_EQ(C(1, "[in_i]", "cm"), 2.54);
  EXPECT_DOUBLE_EQ(C(1, "[ft_i]", "[in_i]"), 12);
  EXPECT_DOUBLE_EQ(C(1, "L", "mL"), 1000);
  EXPECT_DOUBLE_EQ(C(1, "dL", "mL"), 100);
  EXPECT_DOUBLE_EQ(C(1, "L", "dm3"), 1);
  EXPECT_DOUBLE_EQ(C(1000, "cm3", "L"), 1);
  EXPECT_DOUBLE_EQ(C(2, "h", "min"), 120);
  EXPECT_DOUBLE_EQ(C(1, "wk", "d"), 7);
  EXPECT_DOUBLE_EQ(C(1, "a", "d"), 365.25);
  EXPECT_DOUBLE_EQ(C(1, "mm[Hg]", "Pa"), 133.322);
  EXPECT_NEAR(C(120, "mm[Hg]", "kPa"), 15.99864, 1e-9);
  EXPECT_DOUBLE_EQ(C(1, "kcal", "kJ"), 4.184);
  EXPECT_DOUBLE_EQ(C(50, "%", "1"), 0.5);
}

TEST(UcumTest, ProductsQuotientsExponentsAndAnnotations) {
  EXPECT_DOUBLE_EQ(C(1, "mg/dL", "g/L"), 0.01);
  EXPECT_DOUBLE_EQ(C(1, "mmol/L", "umol/mL"), 1);
  EXPECT_DOUBLE_EQ(C(1, "kg/m2", "g/cm2"), 0.1);
  EXPECT_DOUBLE_EQ(C(60, "/min", "/s"), 1);
  EXPECT_DOUBLE_EQ(C(60, "{beats}/min", "Hz"), 1);
  EXPECT_DOUBLE_EQ(C(1, "m.s-2", "cm/s2"), 100);
  EXPECT_DOUBLE_EQ(C(1, "10*3/uL", "10*9/L"), 1);
  EXPECT_DOUBLE_EQ(C(1, "mL/min/{1.73_m2}", "L/h"), 0.06);
  EXPECT_DOUBLE_EQ(C(1, "N", "kg.m/s2"), 1);
  EXPECT_DOUBLE_EQ(C(1, "(kg.m)/(s.s)", "N"), 1);
  EXPECT_DOUBLE_EQ(C(1, "m[iU]/mL", "[iU]/L"), 1);
  EXPECT_EQ(Parse("mg/dL")->UnitText(), "m-3.g");
  EXPECT_EQ(Parse("{count}")->UnitText(), "1");
}

TEST(UcumTest, TemperatureOffsets) {
  EXPECT_DOUBLE_EQ(C(0, "Cel", "K"), 273.15);
  EXPECT_NEAR(C(212, "[degF]", "Cel"), 100, 1e-9);
  EXPECT_NEAR(C(37, "Cel", "[degF]"), 98.6, 1e-9);
  // A temperature difference per unit time has no offset.
  EXPECT_DOUBLE_EQ(C(1, "Cel/h", "K/h"), 1);
}

TEST(UcumTest, IncomparableAndInvalidUnits) {
  EXPECT_FALSE(Convert(1, "g", "m").has_value());
  EXPECT_FALSE(Convert(1, "mg/dL", "mmol/L").has_value());  // needs a molar mass
  EXPECT_FALSE(Convert(1, "[iU]", "mg").has_value());
  EXPECT_FALSE(Convert(1, "[arb'U]", "[iU]").has_value());
  for (const char* bad : {"", "foo", "kg/", "m(", "10*", "[in_i", "{x", "mg//L", "s-", "kmin"}) {
    EXPECT_FALSE(Parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace taproot::fhir::ucum
