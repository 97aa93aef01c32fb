#include "fhirpath/parser.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace taproot::fhirpath {
namespace {

struct Token {
  enum class Type { kEnd, kIdentifier, kDelimitedIdentifier, kString, kNumber, kDateTime, kSymbol };
  Type type = Type::kEnd;
  std::string text;
  int pos = 0;
};

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  Result<std::vector<Token>> Run() {
    std::vector<Token> out;
    for (;;) {
      RETURN_IF_ERROR(SkipSpaceAndComments());
      Token t;
      t.pos = static_cast<int>(i_);
      if (i_ >= s_.size()) {
        out.push_back(t);
        return out;
      }
      char c = s_[i_];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t start = i_;
        while (i_ < s_.size() &&
               (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) {
          ++i_;
        }
        t.type = Token::Type::kIdentifier;
        t.text = std::string(s_.substr(start, i_ - start));
      } else if (c == '`') {
        ASSIGN_OR_RETURN(t.text, Quoted('`'));
        t.type = Token::Type::kDelimitedIdentifier;
      } else if (c == '\'') {
        ASSIGN_OR_RETURN(t.text, Quoted('\''));
        t.type = Token::Type::kString;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t start = i_;
        while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
        if (i_ + 1 < s_.size() && s_[i_] == '.' &&
            std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))) {
          ++i_;
          while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
        }
        t.type = Token::Type::kNumber;
        t.text = std::string(s_.substr(start, i_ - start));
      } else if (c == '@') {
        size_t start = ++i_;
        while (i_ < s_.size() &&
               (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' ||
                s_[i_] == ':' || s_[i_] == '.' || s_[i_] == '+')) {
          // '+' and '-' after the time belong to a zone offset; '.' only before a digit.
          if (s_[i_] == '.' &&
              !(i_ + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))))
            break;
          ++i_;
        }
        t.type = Token::Type::kDateTime;
        t.text = std::string(s_.substr(start, i_ - start));
        if (t.text.empty()) return Error(t.pos, "'@' must be followed by a date or time");
      } else {
        static const char* kTwo[] = {"<=", ">=", "!=", "!~"};
        t.type = Token::Type::kSymbol;
        for (const char* two : kTwo) {
          if (s_.substr(i_, 2) == two) t.text = two;
        }
        if (t.text.empty()) {
          if (std::string_view("().[],+-*/|&=~<>{}$%").find(c) == std::string_view::npos) {
            return Error(t.pos, std::string("unexpected character '") + c + "'");
          }
          t.text = std::string(1, c);
        }
        i_ += t.text.size();
      }
      out.push_back(std::move(t));
    }
  }

  static Status Error(int pos, const std::string& msg) {
    return Status::Invalid("FHIRPath syntax error at position " + std::to_string(pos) + ": " + msg);
  }

 private:
  Status SkipSpaceAndComments() {
    for (;;) {
      while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
      if (s_.substr(i_, 2) == "//") {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (s_.substr(i_, 2) == "/*") {
        size_t end = s_.find("*/", i_ + 2);
        if (end == std::string_view::npos)
          return Error(static_cast<int>(i_), "unterminated comment");
        i_ = end + 2;
      } else {
        return Status::Ok();
      }
    }
  }

  Result<std::string> Quoted(char quote) {
    int start = static_cast<int>(i_);
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != quote) {
      char c = s_[i_++];
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (i_ >= s_.size()) break;
      char e = s_[i_++];
      switch (e) {
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'u': {
          unsigned cp = 0;
          for (int k = 0; k < 4; ++k, ++i_) {
            if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_]))) {
              return Error(start, "bad \\u escape");
            }
            char h = s_[i_];
            cp = cp * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : (std::tolower(h) - 'a' + 10));
          }
          if (cp < 0x80) {
            out.push_back(static_cast<char>(cp));
          } else if (cp < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          } else {
            out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
          }
          break;
        }
        default:
          out.push_back(e);  // \' \" \` \\ \/
      }
    }
    if (i_ >= s_.size()) return Error(start, "unterminated string or identifier");
    ++i_;
    return out;
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

bool IsCalendarDuration(std::string_view w) {
  static const char* kUnits[] = {
      "year", "years", "month",  "months",  "week",   "weeks",   "day",         "days",
      "hour", "hours", "minute", "minutes", "second", "seconds", "millisecond", "milliseconds"};
  for (const char* u : kUnits)
    if (w == u) return true;
  return false;
}

namespace {

// Deeper expressions are refused: parsing and evaluation recurse once per level.
constexpr int kMaxDepth = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Result<std::unique_ptr<Expr>> ParseAll() {
    ASSIGN_OR_RETURN(auto e, ParseExpr(0));
    if (Peek().type != Token::Type::kEnd) return Error("unexpected '" + Peek().text + "'");
    return e;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  Token Next() { return t_[p_ < t_.size() - 1 ? p_++ : p_]; }
  bool IsSymbol(const char* s, size_t ahead = 0) const {
    return Peek(ahead).type == Token::Type::kSymbol && Peek(ahead).text == s;
  }
  bool IsWord(const char* s) const {
    return Peek().type == Token::Type::kIdentifier && Peek().text == s;
  }
  Status Error(const std::string& msg) const { return Lexer::Error(Peek().pos, msg); }

  static std::unique_ptr<Expr> Make(Expr::Kind kind, std::string text, int pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->text = std::move(text);
    e->position = pos;
    return e;
  }

  // Binary operator precedence, or -1 if the next token is not a binary operator.
  int Precedence(std::string* op) const {
    const Token& t = Peek();
    if (t.type == Token::Type::kSymbol) {
      static const std::pair<const char*, int> kOps[] = {
          {"*", 11}, {"/", 11}, {"+", 10}, {"-", 10}, {"&", 10}, {"|", 8},  {"<", 7},
          {">", 7},  {"<=", 7}, {">=", 7}, {"=", 6},  {"~", 6},  {"!=", 6}, {"!~", 6}};
      for (auto& [s, p] : kOps) {
        if (t.text == s) {
          *op = s;
          return p;
        }
      }
      return -1;
    }
    if (t.type == Token::Type::kIdentifier) {
      static const std::pair<const char*, int> kWords[] = {
          {"div", 11},     {"mod", 11}, {"is", 9},  {"as", 9}, {"in", 5},
          {"contains", 5}, {"and", 4},  {"xor", 3}, {"or", 3}, {"implies", 2}};
      for (auto& [s, p] : kWords) {
        if (t.text == s) {
          *op = s;
          return p;
        }
      }
    }
    return -1;
  }

  // Sets e's height from its children; too deep is a syntax error.
  Status Finish(Expr& e) const {
    for (const auto& c : e.children) {
      if (c) e.depth = std::max(e.depth, c->depth + 1);
    }
    if (e.depth > kMaxDepth) return Lexer::Error(e.position, "expression nested too deeply");
    return Status::Ok();
  }

  struct DepthGuard {
    int& n;
    explicit DepthGuard(int& counter) : n(++counter) {}
    ~DepthGuard() { --n; }
  };

  Result<std::unique_ptr<Expr>> ParseExpr(int min_prec) {
    DepthGuard guard(nesting_);
    if (nesting_ > kMaxDepth) return Error("expression nested too deeply");
    ASSIGN_OR_RETURN(auto left, ParseUnary());
    for (;;) {
      std::string op;
      int prec = Precedence(&op);
      if (prec < 0 || prec < min_prec) return left;
      int pos = Next().pos;
      if (op == "is" || op == "as") {
        auto e = Make(Expr::Kind::kTypeOp, op, pos);
        ASSIGN_OR_RETURN(e->type_name, ParseTypeSpecifier());
        e->children.push_back(std::move(left));
        RETURN_IF_ERROR(Finish(*e));
        left = std::move(e);
        continue;
      }
      ASSIGN_OR_RETURN(auto right, ParseExpr(prec + 1));
      auto e = Make(Expr::Kind::kBinary, op, pos);
      e->children.push_back(std::move(left));
      e->children.push_back(std::move(right));
      RETURN_IF_ERROR(Finish(*e));
      left = std::move(e);
    }
  }

  Result<std::string> ParseTypeSpecifier() {
    std::string name;
    for (;;) {
      const Token& t = Peek();
      if (t.type != Token::Type::kIdentifier && t.type != Token::Type::kDelimitedIdentifier) {
        return Error("expected a type name");
      }
      name += Next().text;
      if (!IsSymbol(".")) return name;
      Next();
      name += ".";
    }
  }

  Result<std::unique_ptr<Expr>> ParseUnary() {
    DepthGuard guard(nesting_);
    if (nesting_ > kMaxDepth) return Error("expression nested too deeply");
    if (IsSymbol("+") || IsSymbol("-")) {
      Token op = Next();
      ASSIGN_OR_RETURN(auto operand, ParseUnary());
      auto e = Make(Expr::Kind::kUnary, op.text, op.pos);
      e->children.push_back(std::move(operand));
      RETURN_IF_ERROR(Finish(*e));
      return e;
    }
    ASSIGN_OR_RETURN(auto term, ParseTerm());
    return ParsePostfix(std::move(term));
  }

  Result<std::unique_ptr<Expr>> ParsePostfix(std::unique_ptr<Expr> left) {
    for (;;) {
      if (IsSymbol(".")) {
        Next();
        const Token& t = Peek();
        if (t.type != Token::Type::kIdentifier && t.type != Token::Type::kDelimitedIdentifier) {
          return Error("expected a name after '.'");
        }
        Token name = Next();
        if (IsSymbol("(") && name.type == Token::Type::kIdentifier) {
          ASSIGN_OR_RETURN(auto call, ParseCall(name, std::move(left)));
          left = std::move(call);
        } else {
          auto e = Make(Expr::Kind::kMember, name.text, name.pos);
          e->children.push_back(std::move(left));
          RETURN_IF_ERROR(Finish(*e));
          left = std::move(e);
        }
      } else if (IsSymbol("[")) {
        int pos = Next().pos;
        ASSIGN_OR_RETURN(auto index, ParseExpr(0));
        if (!IsSymbol("]")) return Error("expected ']'");
        Next();
        auto e = Make(Expr::Kind::kIndexer, "[]", pos);
        e->children.push_back(std::move(left));
        e->children.push_back(std::move(index));
        RETURN_IF_ERROR(Finish(*e));
        left = std::move(e);
      } else {
        return left;
      }
    }
  }

  Result<std::unique_ptr<Expr>> ParseCall(const Token& name, std::unique_ptr<Expr> focus) {
    Next();  // (
    auto e = Make(Expr::Kind::kFunction, name.text, name.pos);
    e->children.push_back(std::move(focus));
    if (!IsSymbol(")")) {
      for (;;) {
        ASSIGN_OR_RETURN(auto arg, ParseExpr(0));
        e->children.push_back(std::move(arg));
        if (IsSymbol(",")) {
          Next();
          continue;
        }
        break;
      }
    }
    if (!IsSymbol(")")) return Error("expected ')' to close " + name.text + "(");
    Next();
    RETURN_IF_ERROR(Finish(*e));
    return e;
  }

  Result<std::unique_ptr<Expr>> ParseTerm() {
    const Token t = Peek();
    switch (t.type) {
      case Token::Type::kEnd:
        return Error("unexpected end of expression");
      case Token::Type::kString: {
        Next();
        auto e = Make(Expr::Kind::kLiteral, t.text, t.pos);
        e->literal_kind = Expr::LiteralKind::kString;
        return e;
      }
      case Token::Type::kNumber: {
        Next();
        auto e = Make(Expr::Kind::kLiteral, t.text, t.pos);
        bool decimal = t.text.find('.') != std::string::npos;
        e->literal_kind = decimal ? Expr::LiteralKind::kDecimal : Expr::LiteralKind::kInteger;
        // A number followed by a unit is a quantity.
        if (Peek().type == Token::Type::kString) {
          e->literal_kind = Expr::LiteralKind::kQuantity;
          e->unit = Next().text;
        } else if (Peek().type == Token::Type::kIdentifier && IsCalendarDuration(Peek().text)) {
          e->literal_kind = Expr::LiteralKind::kQuantity;
          e->unit = Next().text;
        }
        return e;
      }
      case Token::Type::kDateTime: {
        Next();
        auto e = Make(Expr::Kind::kLiteral, t.text, t.pos);
        if (t.text[0] == 'T') {
          e->literal_kind = Expr::LiteralKind::kTime;
          e->text = t.text.substr(1);
        } else {
          e->literal_kind = t.text.find('T') != std::string::npos ? Expr::LiteralKind::kDateTime
                                                                  : Expr::LiteralKind::kDate;
        }
        return e;
      }
      case Token::Type::kDelimitedIdentifier:
        Next();
        return Make(Expr::Kind::kIdentifier, t.text, t.pos);
      case Token::Type::kIdentifier: {
        Next();
        if (t.text == "true" || t.text == "false") {
          auto e = Make(Expr::Kind::kLiteral, t.text, t.pos);
          e->literal_kind = Expr::LiteralKind::kBoolean;
          return e;
        }
        if (IsSymbol("(")) return ParseCall(t, nullptr);
        return Make(Expr::Kind::kIdentifier, t.text, t.pos);
      }
      case Token::Type::kSymbol:
        break;
    }
    if (t.text == "(") {
      Next();
      ASSIGN_OR_RETURN(auto e, ParseExpr(0));
      if (!IsSymbol(")")) return Error("expected ')'");
      Next();
      return e;
    }
    if (t.text == "{") {
      Next();
      if (!IsSymbol("}")) return Error("expected '}' (only the empty collection {} is a literal)");
      Next();
      return Make(Expr::Kind::kEmpty, "{}", t.pos);
    }
    if (t.text == "$") {
      Next();
      const Token& w = Peek();
      if (w.type == Token::Type::kIdentifier &&
          (w.text == "this" || w.text == "index" || w.text == "total")) {
        Next();
        return Make(w.text == "this"    ? Expr::Kind::kThis
                    : w.text == "index" ? Expr::Kind::kIndex
                                        : Expr::Kind::kTotal,
                    "$" + w.text, t.pos);
      }
      return Error("expected $this, $index or $total");
    }
    if (t.text == "%") {
      Next();
      const Token& w = Peek();
      if (w.type == Token::Type::kIdentifier || w.type == Token::Type::kDelimitedIdentifier ||
          w.type == Token::Type::kString) {
        Token name = Next();
        return Make(Expr::Kind::kVariable, name.text, t.pos);
      }
      return Error("expected a variable name after '%'");
    }
    return Error("unexpected '" + t.text + "'");
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  int nesting_ = 0;
};

}  // namespace

Result<std::unique_ptr<Expr>> Parse(std::string_view text) {
  ASSIGN_OR_RETURN(auto tokens, Lexer(text).Run());
  return Parser(std::move(tokens)).ParseAll();
}

}  // namespace taproot::fhirpath
