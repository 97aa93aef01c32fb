#include "fhirpath/parser.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <thread>

#include "common/json.h"
#include "fhirpath/engine.h"

namespace taproot::fhirpath {
namespace {

// The tree as an S-expression, to check precedence and associativity.
std::string Show(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.literal_kind == Expr::LiteralKind::kQuantity ? e.text + "'" + e.unit + "'" : e.text;
    case Expr::Kind::kIdentifier:
      return e.text;
    case Expr::Kind::kMember:
      return Show(*e.children[0]) + "." + e.text;
    case Expr::Kind::kBinary:
      return "(" + Show(*e.children[0]) + " " + e.text + " " + Show(*e.children[1]) + ")";
    case Expr::Kind::kUnary:
      return "(" + e.text + Show(*e.children[0]) + ")";
    case Expr::Kind::kTypeOp:
      return "(" + Show(*e.children[0]) + " " + e.text + " " + e.type_name + ")";
    case Expr::Kind::kFunction: {
      std::string out = (e.children[0] ? Show(*e.children[0]) + "." : "") + e.text + "(";
      for (size_t i = 1; i < e.children.size(); ++i)
        out += (i > 1 ? "," : "") + Show(*e.children[i]);
      return out + ")";
    }
    default:
      return e.text;
  }
}

std::string P(const char* text) {
  auto e = Parse(text);
  return e.ok() ? Show(**e) : "ERROR " + e.status().message();
}

TEST(FhirPathParserTest, Precedence) {
  EXPECT_EQ(P("1 + 2 * 3"), "(1 + (2 * 3))");
  EXPECT_EQ(P("1 - 2 - 3"), "((1 - 2) - 3)");
  EXPECT_EQ(P("a and b or c implies d"), "(((a and b) or c) implies d)");
  EXPECT_EQ(P("a = b and c != d"), "((a = b) and (c != d))");
  EXPECT_EQ(P("x is Quantity and y.exists()"), "((x is Quantity) and y.exists())");
  EXPECT_EQ(P("-a.b"), "(-a.b)");
  EXPECT_EQ(P("a | b contains c"), "((a | b) contains c)");
  EXPECT_EQ(P("Patient.name.where(use = 'official').given"),
            "Patient.name.where((use = official)).given");
  EXPECT_EQ(P("4.5 'mg' + 3 days"), "(4.5'mg' + 3'days')");
}

TEST(FhirPathParserTest, DepthIsBounded) {
  // Found by fuzz_fhirpath: deep nesting overflowed the stack.
  EXPECT_NE(P(std::string(5000, '(').c_str()).find("nested too deeply"), std::string::npos);
  EXPECT_NE(P(std::string(5000, '-').append("1").c_str()).find("nested too deeply"),
            std::string::npos);
  std::string chain = "a";
  for (int i = 0; i < 3000; ++i) chain += ".a";
  EXPECT_NE(P(chain.c_str()).find("nested too deeply"), std::string::npos);
  std::string sum = "1";
  for (int i = 0; i < 3000; ++i) sum += "+1";
  EXPECT_NE(P(sum.c_str()).find("nested too deeply"), std::string::npos);
  EXPECT_EQ(P("((((1))))"), "1");
}

TEST(FhirPathParserTest, SyntaxErrorsNamePositions) {
  EXPECT_NE(P("1 +").find("position 3"), std::string::npos) << P("1 +");
  EXPECT_NE(P("a.(b)").find("position 2"), std::string::npos) << P("a.(b)");
  EXPECT_NE(P("'unterminated").find("unterminated"), std::string::npos);
  EXPECT_NE(P("2 /* open").find("comment"), std::string::npos);
}

// The result as comma-separated text, or "error".
std::string EvalText(const json::value& input, const char* text) {
  auto c = Compile(text);
  EXPECT_TRUE(c.ok()) << text;
  if (!c.ok()) return "error";
  auto r = (*c)->Evaluate(input);
  if (!r.ok()) return "error";
  std::string out;
  for (const Item& i : *r) out += (out.empty() ? "" : ",") + ItemToString(i);
  return out;
}

TEST(FhirPathEngineTest, NavigatesInPlace) {
  json::value patient =
      *ParseJson(R"({"resourceType":"Patient","name":[{"use":"official","given":["Ann","B"]},
      {"given":["Nan"]}],"birthDate":"1970-02-01","_birthDate":{"extension":[{"url":"u","valueString":"x"}]}})");
  auto eval = [&](const char* text) { return EvalText(patient, text); };
  EXPECT_EQ(eval("Patient.name.where(use = 'official').given"), "Ann,B");
  EXPECT_EQ(eval("name.given.count()"), "3");
  EXPECT_EQ(eval("birthDate"), "@1970-02-01");
  EXPECT_EQ(eval("birthDate.extension('u').value"), "x");
  EXPECT_EQ(eval("birthDate < @2000-01-01"), "true");
  EXPECT_EQ(eval("name.given.first() + ' ' + name.given.last()"), "Ann Nan");
  EXPECT_EQ(eval("(1 | 2 | 2).count()"), "2");
  EXPECT_EQ(eval("Observation.status"), "");
}

// A path through a Bundle's entries keeps document order and each resource's type, whichever
// step filters them: ofType right after the member (skipped before typing), later, or by base.
TEST(FhirPathEngineTest, BundleEntriesByType) {
  json::value bundle = *ParseJson(R"({"resourceType":"Bundle","type":"collection","entry":[
      {"resource":{"resourceType":"Patient","id":"a","gender":"female"}},
      {"resource":{"resourceType":"Observation","id":"o","status":"final"}},
      {"resource":{"resourceType":"NotAType","id":"x"}},
      {"resource":{"resourceType":"Patient","id":"b","gender":"male"}},
      {"resource":{"id":"untyped"}}]})");
  auto eval = [&](const char* text) { return EvalText(bundle, text); };
  EXPECT_EQ(eval("Bundle.entry.resource.ofType(Patient).id"), "a,b");
  EXPECT_EQ(eval("Bundle.entry.resource.ofType(Patient).gender"), "female,male");
  EXPECT_EQ(eval("Bundle.entry.resource.ofType(Observation).where(status = 'final').id"), "o");
  // A resource of an unknown type, or of none, is still a Resource where one is declared.
  EXPECT_EQ(eval("Bundle.entry.resource.ofType(DomainResource).id"), "a,o,x,b,untyped");
  EXPECT_EQ(eval("Bundle.entry.resource.ofType(Resource).id"), "a,o,x,b,untyped");
  EXPECT_EQ(eval("Bundle.entry.resource.id"), "a,o,x,b,untyped");
  EXPECT_EQ(eval("Bundle.entry.resource.where($this is Patient).id"), "a,b");
  EXPECT_EQ(eval("Bundle.entry.select(resource.ofType(Patient)).id"), "a,b");
}

// where(name = 'text') reads the member in place where the answer is plain and evaluates in
// full otherwise; both must agree with the general evaluation (`... and true` takes it) and with
// the answers worked out by hand from FHIRPath's equality rules.
TEST(FhirPathEngineTest, WhereMemberEqualsTextAgreesWithTheGeneralEvaluation) {
  json::value bundle = *ParseJson(R"({"resourceType":"Bundle","type":"collection","entry":[
      {"resource":{"resourceType":"Observation","id":"1","status":"final",
                   "valueString":"final"}},
      {"resource":{"resourceType":"Observation","id":"2","status":"Final"}},
      {"resource":{"resourceType":"Observation","id":"3"}},
      {"resource":{"resourceType":"Observation","id":"4","_status":{"id":"s"}}},
      {"resource":{"resourceType":"Observation","id":"5","status":null}},
      {"resource":{"resourceType":"Observation","id":"6","status":["final"]}},
      {"resource":{"resourceType":"Observation","id":"7","status":"final","_status":{"id":"s"}}},
      {"resource":{"resourceType":"Patient","id":"8","gender":"final",
                   "birthDate":"1974-12-25","active":"final"}},
      {"resource":{"resourceType":"Patient","id":"9","gender":"female","birthDate":"1974"}}]})");
  auto eval = [&](const std::string& text) { return EvalText(bundle, text.c_str()); };
  const std::pair<std::string, std::string> cases[] = {
      // 6 gives its one status as an array: a collection of one item, equal to the literal.
      {"status = 'final'", "1,6,7"},
      {"status = 'Final'", "2"},
      {"status = ''", ""},
      // A choice, a date and an element given as an array (6) take the general way.
      {"value = 'final'", "1"},
      {"birthDate = '1974-12-25'", ""},
      {"gender = 'final'", "8"},
      {"active = 'final'", "8"},
      {"id = '9'", "9"},
      {"nothing = 'final'", ""},
  };
  for (const auto& [criterion, ids] : cases) {
    SCOPED_TRACE(criterion);
    EXPECT_EQ(eval("Bundle.entry.resource.where(" + criterion + ").id"), ids);
    EXPECT_EQ(eval("Bundle.entry.resource.where(" + criterion + " and true).id"), ids);
  }
}

// Quantities compare and convert through UCUM (expected values from the UCUM definitions).
TEST(FhirPathEngineTest, QuantitiesUseUcum) {
  json::value obs = *ParseJson(R"({"resourceType":"Observation","status":"final",
      "code":{"text":"glucose"},"valueQuantity":{"value":5.5,"unit":"mmol/L",
      "system":"http://unitsofmeasure.org","code":"mmol/L"}})");
  auto eval = [&](const char* text) { return EvalText(obs, text); };
  EXPECT_EQ(eval("Observation.value > 5000 'umol/L'"), "true");
  EXPECT_EQ(eval("Observation.value = 5.5 'mmol/L'"), "true");
  EXPECT_EQ(eval("Observation.value.toQuantity('umol/L')"), "5500 'umol/L'");
  EXPECT_EQ(eval("Observation.value > 5 'mg/dL'"), "");  // mass and amount: not comparable
  EXPECT_EQ(eval("120 'mm[Hg]' > 15 'kPa'"), "true");
  EXPECT_EQ(eval("3 '[ft_i]' = 36 '[in_i]'"), "true");
  EXPECT_EQ(eval("1 'kg' ~ 1000 'g'"), "true");
  EXPECT_EQ(eval("2 'cm' * 3 'm' = 0.06 'm2'"), "true");
  EXPECT_EQ(eval("(10 'mg' / 2 'mL') = 5 'g/L'"), "true");
  EXPECT_EQ(eval("1 week = 7 'd'"), "true");
  EXPECT_EQ(eval("1 year = 365 days"), "");  // calendar year: not a fixed number of days
}

// Nesting the parser accepts but that would take more stack than allowed is an error, on a
// thread with the default stack as on the main one (the fuzzer found an overflow here).
TEST(FhirPathEngineTest, DeepNestingIsAnErrorNotAnOverflow) {
  std::string text = "1";
  for (int i = 0; i < 30; ++i) text += ".combine(1.combine(1";
  for (int i = 0; i < 30; ++i) text += "))";
  auto c = Compile(text);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  json::value empty = json::object{{"resourceType", "Patient"}};
  bool returned = false;
  std::thread worker([&] {
    auto r = (*c)->Evaluate(empty);
    returned = true;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("too deeply"), std::string::npos);
    }
  });
  worker.join();
  EXPECT_TRUE(returned);
}

// Inputs the fuzzer found: out-of-range arithmetic is empty, never undefined behaviour.
TEST(FhirPathEngineTest, OutOfRangeResultsAreEmpty) {
  json::value empty = json::object{{"resourceType", "Patient"}};
  auto count = [&](const char* text) -> int64_t {
    auto c = Compile(text);
    EXPECT_TRUE(c.ok()) << text;
    auto r = (*c)->Evaluate(empty);
    if (!r.ok()) return -1;
    return static_cast<int64_t>(r->size());
  };
  EXPECT_EQ(count("2147483647 + 1"), 0);
  EXPECT_EQ(count("2147483647 * 2"), 0);
  EXPECT_EQ(count("-2147483647 - 2"), 0);
  EXPECT_EQ(count("@1007-01-01T10:04:00Z + 799999999.9999999999 days"), 0);
  EXPECT_EQ(count("@2000-01-01 + 99999 years"), 0);
  EXPECT_EQ(count("@2000-01-01 + 1 year"), 1);
  EXPECT_EQ(count("@2000-01-01T10:00:00Z + 800000000000 days"), 0);
  EXPECT_EQ(count("44444444444444444444444444444444444444444.0 div 0.5"), 0);
  EXPECT_EQ(count("(4444444444444444444444444444444444444444.0 * 1000000000000.0).toString()"), 1);
  EXPECT_EQ(count("2.log()"), -1);  // a missing argument is an error, not a read past the end
  EXPECT_EQ(count("'a'.upper(1)"), -1);
  EXPECT_EQ(count("'9999999999999999999999'.toInteger()"), 0);
  EXPECT_EQ(count("'zz'.decode('hex')"), -1);
  // A pattern that backtracking engines take exponential time on is linear here.
  EXPECT_EQ(count("'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab'.matches('(a+)+$')"), 1);
  EXPECT_EQ(count("'x'.matches('a{8888888888888888888}')"), 1);  // RE2 handles it; no overflow
}

}  // namespace
}  // namespace taproot::fhirpath
