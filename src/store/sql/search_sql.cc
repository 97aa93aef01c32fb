#include "store/sql/search_sql.h"

#include <algorithm>

#include "common/clock.h"

namespace taproot::store::sql {

const char* TableOf(IndexKind kind) {
  switch (kind) {
    case IndexKind::kToken:
      return "idx_token";
    case IndexKind::kString:
      return "idx_string";
    case IndexKind::kDate:
      return "idx_date";
    case IndexKind::kNumber:
      return "idx_number";
    case IndexKind::kQuantity:
      return "idx_quantity";
    case IndexKind::kReference:
      return "idx_ref";
    case IndexKind::kUri:
      return "idx_uri";
    case IndexKind::kText:
      return "idx_fts";
  }
  return "idx_token";
}

namespace {

// Whether a version can be tested against every value of the clause with a lookup by seq (the
// clause's rows are keyed down to the seq, or date rows through idx_date_by_seq). Such a clause
// costs one lookup per candidate instead of collecting all of its matches first.
bool Probeable(const IndexClause& c) {
  if (!c.any_param.empty()) return false;
  for (const IndexPredicate& p : c.any_of) {
    if (p.match == IndexPredicate::Match::kText) return false;
    bool ok = false;
    switch (c.kind) {
      case IndexKind::kToken:
      case IndexKind::kReference:
        ok = p.match == IndexPredicate::Match::kEqual && p.system.has_value();
        break;
      case IndexKind::kUri:
        ok = p.match == IndexPredicate::Match::kEqual;
        break;
      case IndexKind::kDate:
        ok = true;
        break;
      default:
        break;
    }
    if (!ok) return false;
  }
  return true;
}

// How well a clause can start a search (lower is better: fewer rows, read in seq order), or -1
// if it cannot (negations, :missing, chains and _has are tested against candidates instead).
// Without table statistics this ranks by kind: a reference to one resource or a coded value
// usually matches few rows; a date range or a name prefix many.
int DriverRank(const IndexClause& c) {
  if (c.negate || c.missing || c.has) return -1;
  if (!c.chain.empty()) return 5;
  if (c.any_of.empty()) return -1;
  int worst = 0;
  for (const IndexPredicate& p : c.any_of) {
    int r = 9;
    bool eq = p.match == IndexPredicate::Match::kEqual;
    if (p.match == IndexPredicate::Match::kText) {
      r = 9;
    } else if (c.kind == IndexKind::kReference && eq) {
      r = p.system ? 0 : 2;
    } else if (c.kind == IndexKind::kToken && eq) {
      r = p.system ? 1 : 3;
    } else if (c.kind == IndexKind::kUri && eq) {
      r = 3;
    } else if (c.kind == IndexKind::kString && p.match == IndexPredicate::Match::kExact) {
      r = 4;
    } else if (c.kind == IndexKind::kToken) {
      r = 5;
    } else if (c.kind == IndexKind::kNumber || c.kind == IndexKind::kQuantity) {
      r = 6;
    } else if (c.kind == IndexKind::kString && p.match == IndexPredicate::Match::kPrefix) {
      r = 7;
    } else if (c.kind == IndexKind::kDate) {
      r = 8;
    }
    worst = std::max(worst, r);
  }
  return worst;
}

}  // namespace

std::string NumberPlaceholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  for (char ch : sql) {
    if (ch == '?') {
      out += '$' + std::to_string(++n);
    } else {
      out += ch;
    }
  }
  return out;
}

namespace {

class Compiler {
 public:
  Compiler(Dialect dialect, SqlRunner& runner) : dialect_(dialect), runner_(runner) {}

  // Upper bound for "starts with" over a binary-collated TEXT column: 0xFF never occurs in UTF-8.
  std::string PrefixEnd(const std::string& prefix) const {
    return prefix + (dialect_ == Dialect::kSqlite ? "\xff" : "\xf4\x8f\xbf\xbf");
  }

  // The condition that an index row (of table alias `a`, "" for none) is of `type` and `param`,
  // or of any of several parameters (a compartment's links, the parts of a combined parameter),
  // each name with `suffix` (":text", "$system|code"). Rows carry one number for the pair
  // (idx_keys): "a.tp IN (?,...)", the numbers looked up now; a pair never written gets -1, which
  // no row has. Full-text rows keep both names: "a.type=? AND a.param IN (?,...)".
  std::string KeyIn(const std::string& a, IndexKind kind, const std::string& type,
                    const std::string& param, const std::vector<std::string>& any_param,
                    std::vector<SqlArg>& args, const std::string& suffix = {}) {
    const std::string prefix = a.empty() ? a : a + ".";
    const std::vector<std::string> one{param};
    const std::vector<std::string>& params = any_param.empty() ? one : any_param;
    std::string sql;
    const bool numbered = kind != IndexKind::kText;
    if (numbered) {
      sql = prefix + "tp";
    } else {
      sql = prefix + "type=? AND " + prefix + "param";
      args.push_back({SqlArg::kText, type});
    }
    sql += params.size() == 1 ? "=?" : " IN (";
    for (size_t i = 0; i < params.size(); ++i) {
      if (params.size() > 1) sql += i ? ",?" : "?";
      if (numbered) {
        args.push_back({SqlArg::kInt, {}, runner_.IndexKey(type, params[i] + suffix)});
      } else {
        args.push_back({SqlArg::kText, params[i] + suffix});
      }
    }
    return params.size() == 1 ? sql : sql + ")";
  }

  // The SQL that selects the versions (seq) of `type` resources with a row matching one predicate.
  // Only fixed fragments enter the SQL; every value is bound (appended to args).
  //
  // With `probe` (an alias), the SQL instead tests whether that one version has such a row: a
  // lookup by seq rather than a scan of every match (see Probeable).
  std::string PredicateSql(const std::string& type, const IndexClause& c, const IndexPredicate& p,
                           std::vector<SqlArg>& args, const std::string& probe = {}) {
    auto text = [&](std::string v) { args.push_back({SqlArg::kText, std::move(v)}); };
    auto integer = [&](int64_t v) { args.push_back({SqlArg::kInt, {}, v}); };
    auto real = [&](double v) { args.push_back({SqlArg::kReal, {}, 0, v}); };
    IndexKind kind = p.match == IndexPredicate::Match::kText ? IndexKind::kString : c.kind;
    std::string sql =
        probe.empty() ? std::string("SELECT seq FROM ") + TableOf(kind) + " WHERE "
        : kind == IndexKind::kDate
            ? "SELECT 1 FROM idx_date" + Hint("idx_date_by_seq") + " WHERE seq=" + probe +
                  ".seq AND "
            : std::string("SELECT 1 FROM ") + TableOf(kind) + " WHERE seq=" + probe + ".seq AND ";
    sql += KeyIn("", kind, type, c.param, c.any_param, args,
                 p.match == IndexPredicate::Match::kText ? ":text" : p.param_suffix);
    // Ranges of ordered values (R4 search 3.1.1.4): [s, e] the search value, [rs, re] the row.
    auto ranges = [&](const char* rs, const char* re, auto bind_s, auto bind_e) {
      std::string RS(rs), RE(re);
      switch (p.prefix) {
        case Prefix::kEq:
          sql += " AND " + RS + ">=? AND " + RE + "<=?";
          bind_s(), bind_e();
          break;
        case Prefix::kNe:
          sql += " AND NOT (" + RS + ">=? AND " + RE + "<=?)";
          bind_s(), bind_e();
          break;
        case Prefix::kGt:
          sql += " AND " + RE + ">?";
          bind_e();
          break;
        case Prefix::kLt:
          sql += " AND " + RS + "<?";
          bind_s();
          break;
        case Prefix::kGe:
          sql += " AND (" + RE + ">? OR (" + RS + ">=? AND " + RE + "<=?))";
          bind_e(), bind_s(), bind_e();
          break;
        case Prefix::kLe:
          sql += " AND (" + RS + "<? OR (" + RS + ">=? AND " + RE + "<=?))";
          bind_s(), bind_s(), bind_e();
          break;
        case Prefix::kSa:
          sql += " AND " + RS + ">?";
          bind_e();
          break;
        case Prefix::kEb:
          sql += " AND " + RE + "<?";
          bind_s();
          break;
        case Prefix::kAp:  // start and end already widened by the parser
          sql += " AND " + RS + "<=? AND " + RE + ">=?";
          bind_e(), bind_s();
          break;
      }
    };
    switch (p.match == IndexPredicate::Match::kText ? IndexKind::kString : c.kind) {
      case IndexKind::kToken:
        if (p.match == IndexPredicate::Match::kIn) {
          sql += " AND (code, system) IN (VALUES ";
          for (size_t i = 0; i < p.codes.size(); ++i) {
            sql += i ? ",(?,?)" : "(?,?)";
            text(p.codes[i].second);
            text(p.codes[i].first);
          }
          if (p.codes.empty()) sql += "(NULL,NULL)";
          sql += ")";
          break;
        }
        sql += " AND code=?";
        text(p.value);
        if (p.system) {
          sql += " AND system=?";
          text(*p.system);
        }
        break;
      case IndexKind::kString:
        if (p.match == IndexPredicate::Match::kExact) {
          sql += " AND exact=?";
          text(p.value);
        } else if (p.match == IndexPredicate::Match::kContains) {
          sql +=
              dialect_ == Dialect::kSqlite ? " AND instr(norm, ?) > 0" : " AND strpos(norm, ?) > 0";
          text(p.value);
        } else {
          sql += " AND norm>=? AND norm<?";
          text(p.value);
          text(PrefixEnd(p.value));
        }
        break;
      case IndexKind::kDate:
        ranges(
            "start", "\"end\"", [&] { integer(p.start); }, [&] { integer(p.end); });
        break;
      case IndexKind::kNumber:
      case IndexKind::kQuantity:
        if (c.kind == IndexKind::kQuantity) {
          if (!p.value.empty()) {
            sql += " AND code=?";
            text(p.value);
          }
          if (p.system) {
            sql += " AND system=?";
            text(*p.system);
          }
        }
        // A stored value is a point. eq: it lies in the search value's precision range
        // [low, high) (R4: "100" searches [99.5, 100.5)); the other prefixes compare values.
        switch (p.prefix) {
          case Prefix::kEq:
            sql += " AND value>=? AND value<?";
            real(p.low), real(p.high);
            break;
          case Prefix::kNe:
            sql += " AND NOT (value>=? AND value<?)";
            real(p.low), real(p.high);
            break;
          case Prefix::kAp:
            sql += " AND value>=? AND value<=?";
            real(p.low), real(p.high);
            break;
          default:
            ranges(
                "value", "value", [&] { real(p.low); }, [&] { real(p.high); });
        }
        break;
      case IndexKind::kReference:
        sql += " AND target=?";
        text(p.value);
        if (p.system) {
          sql += " AND target_type=?";
          text(*p.system);
        }
        break;
      case IndexKind::kUri:
        if (p.match == IndexPredicate::Match::kPrefix) {
          sql += " AND uri>=? AND uri<?";
          text(p.value);
          text(PrefixEnd(p.value));
        } else if (p.match == IndexPredicate::Match::kAbove) {
          sql +=
              dialect_ == Dialect::kSqlite ? " AND instr(?, uri) = 1" : " AND strpos(?, uri) = 1";
          text(p.value);
        } else {
          sql += " AND uri=?";
          text(p.value);
        }
        break;
      case IndexKind::kText:
        // Quoted plain words (the search layer's): an FTS5 query as it is; PostgreSQL reads the
        // words and ANDs them, with accents folded as at indexing.
        sql += dialect_ == Dialect::kSqlite
                   ? " AND body MATCH ?"
                   : " AND body @@ plainto_tsquery('simple', taproot_fold(?))";
        text(p.value);
        break;
    }
    return sql;
  }

  // The versions (seq) of `type` whose reference parameter points at a current resource matching
  // the chain's next clause: "SELECT seq FROM idx_ref ..." (a version may appear more than once).
  Status ChainSql(const std::string& type, const IndexClause& clause, int depth, std::string& sql,
                  std::vector<SqlArg>& args) {
    auto text = [&](std::string v) { args.push_back({SqlArg::kText, std::move(v)}); };
    std::string inner = "c" + std::to_string(depth + 1);
    std::string ref = "r" + std::to_string(depth + 1);
    sql += "SELECT " + ref + ".seq FROM idx_ref " + ref + " WHERE " +
           KeyIn(ref, IndexKind::kReference, type, clause.param, {}, args) + " AND (";
    for (size_t i = 0; i < clause.chain.size(); ++i) {
      const auto& [target_type, next] = clause.chain[i];
      if (i) sql += " OR ";
      sql += "(" + ref + ".target_type=? AND " + ref + ".target IN (SELECT " + inner +
             ".id FROM current " + inner + " WHERE " + inner + ".type=? AND " + inner +
             ".deleted=0 AND ";
      text(target_type);
      text(target_type);
      RETURN_IF_ERROR(ClauseCondition(target_type, *next, inner, depth + 1, false, sql, args));
      sql += "))";
    }
    sql += ")";
    return Status::Ok();
  }

  // The versions (seq) matching a driving clause, each once. One value that keys its rows down to
  // the seq comes out in seq order straight from the index.
  Result<std::string> DriverSql(const std::string& type, const IndexClause& c,
                                std::vector<SqlArg>& args) {
    if (!c.chain.empty()) {
      std::string sql = "SELECT DISTINCT seq FROM (";
      RETURN_IF_ERROR(ChainSql(type, c, 0, sql, args));
      return sql + ") u";
    }
    if (c.any_of.size() == 1 && Probeable(c) && c.kind != IndexKind::kDate) {
      return PredicateSql(type, c, c.any_of[0], args);
    }
    std::string sql = c.any_of.size() == 1 ? "SELECT DISTINCT seq FROM (" : "SELECT seq FROM (";
    for (size_t i = 0; i < c.any_of.size(); ++i) {
      if (i) sql += " UNION ";
      sql += PredicateSql(type, c, c.any_of[i], args);
    }
    return sql + ") u";
  }

  // Appends the condition that `<alias>` (a row of `current`, of `type`) matches `clause`. Each
  // clause is driven from its index, which finds the matching versions (seq) directly; rows of
  // earlier versions do not match current.seq. Chains and reverse chains nest, one alias per
  // level (bounded by the parser).
  //
  // `few_candidates`: the versions tested were already narrowed down (by a driving clause), so
  // per-candidate lookups beat collecting every match of a reverse chain.
  Status ClauseCondition(const std::string& type, const IndexClause& clause,
                         const std::string& alias, int depth, bool few_candidates, std::string& sql,
                         std::vector<SqlArg>& args) {
    if (depth > 8) return Status::Invalid("search chains nest too deeply");
    auto text = [&](std::string v) { args.push_back({SqlArg::kText, std::move(v)}); };
    std::string inner = "c" + std::to_string(depth + 1);
    std::string ref = "r" + std::to_string(depth + 1);
    if (!clause.chain.empty()) {
      sql += alias + ".seq IN (";
      RETURN_IF_ERROR(ChainSql(type, clause, depth, sql, args));
      sql += ")";
      return Status::Ok();
    }
    if (clause.has && !clause.has->has) {
      // Rows of the referring type's reference parameter, of versions still current, whose
      // version matches the inner clause. With few candidates (a driver found them), each looks up
      // its own referrers; otherwise the referred-to ids are collected once.
      std::string live = "NOT EXISTS (SELECT 1 FROM superseded x" + ref + " WHERE x" + ref +
                         ".seq=" + ref + ".seq)";
      std::string key = KeyIn(ref, IndexKind::kReference, clause.has_type, clause.param, {}, args);
      if (few_candidates) {
        sql += "EXISTS (SELECT 1 FROM idx_ref " + ref + " WHERE " + key + " AND " + ref +
               ".target=" + alias + ".id AND " + ref + ".target_type=? AND " + live + " AND ";
      } else {
        sql += alias + ".id IN (SELECT " + ref + ".target FROM idx_ref " + ref + " WHERE " + key +
               " AND " + ref + ".target_type=? AND " + live + " AND ";
      }
      text(type);
      RETURN_IF_ERROR(
          ClauseCondition(clause.has_type, *clause.has, ref, depth + 1, few_candidates, sql, args));
      sql += few_candidates ? PerRow() + ")" : ")";
      return Status::Ok();
    }
    if (clause.has) {
      // A nested _has needs the referring resource's id: versions by seq, then current.
      std::string v = "v" + std::to_string(depth + 1);
      sql += alias + ".id IN (SELECT " + ref + ".target FROM idx_ref " + ref + " JOIN versions " +
             v + " ON " + v + ".seq=" + ref + ".seq JOIN current " + inner + " ON " + inner +
             ".type=" + v + ".type AND " + inner + ".id=" + v + ".id AND " + inner + ".seq=" + ref +
             ".seq AND " + inner + ".deleted=0 WHERE " +
             KeyIn(ref, IndexKind::kReference, clause.has_type, clause.param, {}, args) + " AND " +
             ref + ".target_type=? AND ";
      text(type);
      RETURN_IF_ERROR(
          ClauseCondition(clause.has_type, *clause.has, inner, depth + 1, false, sql, args));
      sql += ")";
      return Status::Ok();
    }
    if (clause.missing) {
      sql += alias + (*clause.missing ? ".seq NOT IN (" : ".seq IN (");
      sql += std::string("SELECT seq FROM ") + TableOf(clause.kind) + " WHERE " +
             KeyIn("", clause.kind, type, clause.param, clause.any_param, args) + ")";
      return Status::Ok();
    }
    if (!clause.negate && !clause.any_of.empty() && Probeable(clause)) {
      sql += "(";
      for (size_t i = 0; i < clause.any_of.size(); ++i) {
        if (i) sql += " OR ";
        sql +=
            "EXISTS (" + PredicateSql(type, clause, clause.any_of[i], args, alias) + PerRow() + ")";
      }
      sql += ")";
      return Status::Ok();
    }
    sql += alias + (clause.negate ? ".seq NOT IN (" : ".seq IN (");
    for (size_t i = 0; i < clause.any_of.size(); ++i) {
      if (i) sql += " UNION ";
      sql += PredicateSql(type, clause, clause.any_of[i], args);
    }
    if (clause.any_of.empty()) sql += "SELECT CAST(NULL AS BIGINT) WHERE 1=0";
    sql += ")";
    return Status::Ok();
  }

  // Ends a correlated EXISTS that must stay a lookup per candidate. PostgreSQL would otherwise
  // turn it into a semi-join and may read every row of the code or date range first (its
  // planner does not pull up a subquery with an OFFSET); SQLite keeps it per row anyway.
  std::string PerRow() const { return dialect_ == Dialect::kSqlite ? "" : " OFFSET 0"; }

  // An index hint: SQLite only (PostgreSQL plans by its statistics).
  std::string Hint(const char* index) const {
    return dialect_ == Dialect::kSqlite ? std::string(" INDEXED BY ") + index : std::string();
  }
  // A join whose left side SQLite must read first (CROSS JOIN fixes the order there);
  // PostgreSQL has no such hint and needs none.
  const char* OrderedJoin() const {
    return dialect_ == Dialect::kSqlite ? " CROSS JOIN " : " JOIN ";
  }

  // The ORDER BY term of a date sort key for the version whose seq is `a`.seq, looked up
  // through idx_date_by_seq. Resources without a date go last, with the key looked up once: NULL
  // sorts last when descending (SQLite's default; PostgreSQL is told), and the largest integer
  // stands in for it when ascending.
  std::string DateOrder(const std::string& type, const SortKey& k, const std::string& a,
                        std::vector<SqlArg>& args) {
    std::string key = std::string("(SELECT ") + (k.descending ? "max(\"end\")" : "min(start)") +
                      " FROM idx_date" + Hint("idx_date_by_seq") + " WHERE seq=" + a + ".seq AND " +
                      KeyIn("", k.kind, type, k.param, k.any_param, args) + ")";
    return k.descending ? key + (dialect_ == Dialect::kSqlite ? " DESC, " : " DESC NULLS LAST, ")
                        : "coalesce(" + key + ", 9223372036854775807), ";
  }

  Result<SearchPage> Search(const SearchQuery& q) {
    // Built from fixed fragments with bound values only; no caller text enters the SQL.
    //
    // Plan: when a clause can drive (DriverRank), its index rows are read first, in seq order
    // where the index gives it, and each candidate version is then checked: not superseded (as
    // of the snapshot), and matching the other clauses (by lookup where Probeable). Without such
    // a clause the versions of the type are read in seq order. Results come in seq order (the
    // order resources were written) unless _sort says otherwise.
    SearchPage page;
    // A later page runs against the first page's snapshot: versions written since are out, and
    // versions superseded since are still in. Only needed when something was written since.
    // Otherwise the snapshot's newest seq is read last, and only when a paging link needs it
    // (SearchPage::snapshot_seq).
    bool as_of = false;
    if (q.as_of_seq) {
      ASSIGN_OR_RETURN(int64_t newest, runner_.NewestSeq());
      page.snapshot_seq = std::min(*q.as_of_seq, newest);
      as_of = *q.as_of_seq < newest;
    }

    // _explain: the plan the database chose for a statement, bound like the statement itself.
    auto explain = [&](const std::string& sql, const std::vector<SqlArg>& args) -> Status {
      SearchPage::Step step;
      step.sql = sql;
      ASSIGN_OR_RETURN(step.plan, runner_.Explain(sql, args));
      page.explained.push_back(std::move(step));
      return Status::Ok();
    };
    auto timed = [&](int64_t start) {
      if (!page.explained.empty()) page.explained.back().micros = NowMicros() - start;
    };

    // The driver. A reference (to one resource) is taken at once; otherwise, with several
    // candidates, each is counted up to kProbeRows and the smallest wins (ties by rank): a
    // cheap statistic that adapts to the data (a chain on a rare name beats a common code).
    int driver = -1;
    {
      std::vector<std::pair<int, int>> candidates;  // (rank, clause)
      for (size_t i = 0; i < q.clauses.size() && !q.type.empty(); ++i) {
        int r = DriverRank(q.clauses[i]);
        if (r >= 0) candidates.emplace_back(r, static_cast<int>(i));
      }
      std::sort(candidates.begin(), candidates.end());
      // Counting a date range can mean scanning far before the first match (rows are keyed by
      // start, and most prefixes test end too): dates are estimated only against each other.
      static constexpr int kCheapToCount = 7;
      if (!candidates.empty() && candidates[0].first <= kCheapToCount) {
        while (candidates.back().first > kCheapToCount) candidates.pop_back();
      }
      if (candidates.size() == 1 || (!candidates.empty() && candidates[0].first <= 2)) {
        driver = candidates[0].second;
      } else if (!candidates.empty()) {
        static constexpr int kProbeRows = 2000;
        int64_t fewest = -1;
        for (const auto& [rank, i] : candidates) {
          std::vector<SqlArg> args;
          ASSIGN_OR_RETURN(std::string d, DriverSql(q.type, q.clauses[i], args));
          std::string sql = "SELECT count(*) FROM (SELECT 1 FROM (" + d + ") d LIMIT " +
                            std::to_string(kProbeRows) + ") n";
          if (q.explain) RETURN_IF_ERROR(explain(sql, args));
          int64_t start = NowMicros();
          ASSIGN_OR_RETURN(int64_t n, runner_.QueryInt(sql, args));
          if (q.explain) timed(start);
          if (fewest < 0 || n < fewest) fewest = n, driver = i;
        }
      }
    }
    // A reference to one patient through the parameter that keys the type's rows to patients
    // (IndexClause::patient_keyed), beside a code: on PostgreSQL, whose index rows carry that key,
    // the code's rows of that patient drive (idx_token_by_patient) instead of every resource
    // referring to the patient, each probed for the code. The code's clause is met by the driver;
    // the reference is still tested. A patient's observations of one code cost what they number,
    // not what all the patient's observations number.
    int narrowing = -1;
    if (dialect_ == Dialect::kPostgres && driver >= 0 && q.clauses[driver].patient_keyed) {
      for (size_t i = 0; i < q.clauses.size() && narrowing < 0; ++i) {
        const IndexClause& c = q.clauses[i];
        if (c.kind == IndexKind::kToken && c.any_of.size() == 1 && Probeable(c) && !c.negate &&
            !c.missing && c.chain.empty() && !c.has && c.any_of[0].param_suffix.empty()) {
          narrowing = static_cast<int>(i);
        }
      }
    }
    // The driver's matching seqs, in seq order, and the clause its rows meet (left out of the
    // conditions).
    auto driver_sql = [&](std::vector<SqlArg>& args) -> Result<std::string> {
      if (narrowing < 0) return DriverSql(q.type, q.clauses[driver], args);
      const IndexClause& c = q.clauses[narrowing];
      std::string sql = PredicateSql(q.type, c, c.any_of[0], args) + " AND patient=?";
      args.push_back({SqlArg::kText, q.clauses[driver].any_of[0].value});
      return sql;
    };
    const int met_by_driver = narrowing >= 0 ? narrowing : driver;
    bool needs_id = !q.ids.empty() || q.updated_ge || q.updated_lt;
    for (const IndexClause& c : q.clauses) needs_id = needs_id || c.has;

    // The conditions every candidate must meet, on alias `a`: a row of `versions`, or of
    // `current` (live by definition: no superseded test), or the driver's seq alone.
    enum class Rows { kVersions, kCurrent, kSeqOnly };
    bool counting = false;  // the total counts every match, wherever the page starts
    const bool ids_drive = driver < 0 && !q.ids.empty() && !q.type.empty();
    auto conditions = [&](const std::string& a, Rows rows, std::string& sql,
                          std::vector<SqlArg>& args) -> Status {
      bool first = true;
      auto next = [&] {
        sql += first ? " WHERE " : " AND ";
        first = false;
      };
      if (rows != Rows::kCurrent) {
        next();
        sql += "NOT EXISTS (SELECT 1 FROM superseded x WHERE x.seq=" + a + ".seq";
        if (as_of) {
          sql += " AND x.by_seq<=?";
          args.push_back({SqlArg::kInt, {}, *q.as_of_seq});
        }
        sql += ")";
        if (as_of) {
          sql += " AND " + a + ".seq<=?";
          args.push_back({SqlArg::kInt, {}, *q.as_of_seq});
        }
      }
      if (rows != Rows::kSeqOnly) {
        next();
        sql += a + ".deleted=0";
        if (!q.type.empty()) {
          sql += " AND " + a + ".type=?";
          args.push_back({SqlArg::kText, q.type});
        }
        if (!q.ids.empty()) {
          sql += " AND " + a + ".id IN (";
          for (size_t i = 0; i < q.ids.size(); ++i) {
            sql += i ? ",?" : "?";
            args.push_back({SqlArg::kText, q.ids[i]});
          }
          sql += ")";
        }
        if (q.updated_ge) {
          sql += " AND " + a + ".ts>=?";
          args.push_back({SqlArg::kInt, {}, *q.updated_ge});
        }
        if (q.updated_lt) {
          sql += " AND " + a + ".ts<?";
          args.push_back({SqlArg::kInt, {}, *q.updated_lt});
        }
      }
      if (q.after_seq && !counting) {
        next();
        sql += a + ".seq>?";
        args.push_back({SqlArg::kInt, {}, *q.after_seq});
      }
      for (size_t i = 0; i < q.clauses.size(); ++i) {
        if (static_cast<int>(i) == met_by_driver) continue;
        if (q.type.empty()) return Status::Invalid("search parameters need a resource type");
        next();
        // PostgreSQL evaluates a condition where its columns are first available: tested on the
        // driver's seq (m), a candidate is dropped before its version row (and body) is read.
        // A reverse chain needs the resource's id, from the version row.
        bool on_driver = dialect_ == Dialect::kPostgres && rows == Rows::kVersions &&
                         (driver >= 0 || ids_drive) && !q.clauses[i].has;
        RETURN_IF_ERROR(
            ClauseCondition(q.type, q.clauses[i], on_driver ? "m" : a, 0, driver >= 0, sql, args));
      }
      return Status::Ok();
    };
    // The relation searched: the driver's matches joined to their versions, or the versions.
    // _id (and _include's reads by id) start from the versions of those ids: left to itself,
    // SQLite would walk every version of the type in seq order to honour ORDER BY.

    auto relation = [&](std::vector<SqlArg>& args) -> Result<std::string> {
      if (ids_drive) {
        // The index of UNIQUE(type, id, version), named: flattened into the join, the
        // subquery would otherwise take versions_by_type for its seq order.
        std::string sql = std::string("(SELECT seq FROM versions") +
                          Hint("sqlite_autoindex_versions_1") + " WHERE type=? AND id IN (";
        args.push_back({SqlArg::kText, q.type});
        for (size_t i = 0; i < q.ids.size(); ++i) {
          sql += i ? ",?" : "?";
          args.push_back({SqlArg::kText, q.ids[i]});
        }
        return sql + ")) m" + OrderedJoin() + "versions c ON c.seq=m.seq";
      }
      if (driver < 0) return std::string("versions c");
      ASSIGN_OR_RETURN(std::string d, driver_sql(args));
      return "(" + d + ") m" + OrderedJoin() + "versions c ON c.seq=m.seq";
    };

    // Reads a page and one more version, which tells whether there is a next page.
    auto run_page = [&](const std::string& sql, const std::vector<SqlArg>& args,
                        int64_t* extra = nullptr) -> Status {
      if (q.explain) RETURN_IF_ERROR(explain(sql, args));
      int64_t start = NowMicros();
      ASSIGN_OR_RETURN(page.resources, runner_.QueryVersions(sql, args, extra));
      if (q.explain) timed(start);
      if (static_cast<int64_t>(page.resources.size()) > q.count) {
        page.has_more = true;
        page.resources.pop_back();
      }
      return Status::Ok();
    };
    // Sorted by dates only, from a driver: the page's seqs are sorted and cut from the index
    // rows alone, and only the page's versions are read (not every candidate's, body included,
    // to be sorted and mostly thrown away). The keys are looked up again for the page's few
    // rows to order them. The sort visits every match, so the same pass counts them (a window
    // count), and the total needs no statement of its own.
    bool dates_only = !q.sort.empty();
    for (const SortKey& k : q.sort) {
      dates_only =
          dates_only && k.kind == IndexKind::kDate && k.param != "_id" && k.param != "_lastUpdated";
    }
    // Reads by id alone (_include's, $everything's patient, `_id=`): the current versions of
    // those ids, found through `current`, the table of exactly the live versions.
    const bool by_current = ids_drive && q.clauses.empty() && q.sort.empty() && !q.as_of_seq &&
                            !q.after_seq && !q.updated_ge && !q.updated_lt;
    if (q.count > 0 && by_current) {
      std::vector<SqlArg> args{{SqlArg::kText, q.type}};
      std::string sql = std::string(
                            "SELECT c.type, c.id, c.version, c.ts, c.deleted, c.method, "
                            "c.body, c.seq FROM current k") +
                        OrderedJoin() + "versions c ON c.seq=k.seq WHERE k.type=? AND k.id IN (";
      for (size_t i = 0; i < q.ids.size(); ++i) {
        sql += i ? ",?" : "?";
        args.push_back({SqlArg::kText, q.ids[i]});
      }
      sql += ") AND k.deleted=0 ORDER BY c.seq LIMIT ? OFFSET ?";
      args.push_back({SqlArg::kInt, {}, q.count + 1});
      args.push_back({SqlArg::kInt, {}, q.offset});
      RETURN_IF_ERROR(run_page(sql, args));
    } else if (q.count > 0 && dates_only && driver >= 0 && !needs_id) {
      std::vector<SqlArg> args;
      ASSIGN_OR_RETURN(std::string d, driver_sql(args));
      std::string inner = "SELECT m.seq, count(*) OVER () AS n FROM (" + d + ") m";
      RETURN_IF_ERROR(conditions("m", Rows::kSeqOnly, inner, args));
      std::string inner_order, outer_order;
      for (const SortKey& k : q.sort) inner_order += DateOrder(q.type, k, "m", args);
      inner += " ORDER BY " + inner_order + "m.seq LIMIT ? OFFSET ?";
      args.push_back({SqlArg::kInt, {}, q.count + 1});
      args.push_back({SqlArg::kInt, {}, q.offset});
      for (const SortKey& k : q.sort) outer_order += DateOrder(q.type, k, "p", args);
      std::string sql =
          "SELECT c.type, c.id, c.version, c.ts, c.deleted, c.method, c.body, c.seq, p.n FROM (" +
          inner + ") p" + OrderedJoin() + "versions c ON c.seq=p.seq ORDER BY " + outer_order +
          "p.seq";
      int64_t matches = -1;
      RETURN_IF_ERROR(run_page(sql, args, &matches));
      // after_seq narrows the rows the window counts; the total counts them all.
      if (matches >= 0 && !q.after_seq) page.total = matches;
    } else if (q.count > 0) {
      std::vector<SqlArg> args;
      ASSIGN_OR_RETURN(std::string from, relation(args));
      std::string sql =
          "SELECT c.type, c.id, c.version, c.ts, c.deleted, c.method, c.body, c.seq FROM " + from;
      // Sort keys. Dates are looked up per result through idx_date_by_seq; other kinds join
      // their parameter's rows once, grouped per version (min for ascending, max for
      // descending: a resource sorts by its first or last value).
      std::string order;
      std::vector<SqlArg> order_args;
      for (size_t i = 0; i < q.sort.size(); ++i) {
        const SortKey& k = q.sort[i];
        const char* dir = k.descending ? " DESC" : "";
        if (k.param == "_id") {
          order += std::string("c.id") + dir + ", ";
          continue;
        }
        if (k.param == "_lastUpdated") {
          order += std::string("c.ts") + dir + ", ";
          continue;
        }
        const char* agg = k.descending ? "max(" : "min(";
        if (k.kind == IndexKind::kDate) {
          order += DateOrder(q.type, k, "c", order_args);
          continue;
        }
        const char* column = "norm";
        switch (k.kind) {
          case IndexKind::kToken:
            column = "code";
            break;
          case IndexKind::kNumber:
          case IndexKind::kQuantity:
            column = "value";
            break;
          case IndexKind::kReference:
            column = "target";
            break;
          case IndexKind::kUri:
            column = "uri";
            break;
          case IndexKind::kText:
            column = "body";
            break;
          default:
            break;
        }
        std::string alias = "s" + std::to_string(i);
        sql += std::string(" LEFT JOIN (SELECT seq, ") + agg + column + ") AS k FROM " +
               TableOf(k.kind) + " WHERE " + KeyIn("", k.kind, q.type, k.param, k.any_param, args) +
               " GROUP BY seq) " + alias + " ON " + alias + ".seq=c.seq";
        order += alias + ".k IS NULL, " + alias + ".k" + dir + ", ";
      }
      RETURN_IF_ERROR(conditions("c", Rows::kVersions, sql, args));
      // m.seq, not c.seq: SQLite knows the driver's index delivers m.seq in order, which lets
      // LIMIT stop the scan early; it does not carry that order over the join to c.seq.
      sql += " ORDER BY " + order + (driver >= 0 || ids_drive ? "m.seq" : "c.seq") +
             " LIMIT ? OFFSET ?";
      for (auto& a : order_args) args.push_back(std::move(a));
      args.push_back({SqlArg::kInt, {}, q.count + 1});
      args.push_back({SqlArg::kInt, {}, q.offset});
      RETURN_IF_ERROR(run_page(sql, args));
    }
    // A first page that holds every match is its own total: the count, a second pass over the
    // same matches, is skipped (most per-patient searches fit on one page). A date sort's page
    // may have counted them already.
    const bool counted = page.total.has_value();
    if (!q.want_total) {
      page.total.reset();
    } else if (!counted && q.count > 0 && q.offset == 0 && !q.after_seq && !page.has_more) {
      page.total = static_cast<int64_t>(page.resources.size());
    } else if (!counted) {
      counting = true;
      std::vector<SqlArg> args;
      std::string sql;
      if (driver >= 0 && !needs_id) {
        // Index rows exist only for live versions of their type: counting the driver's matches
        // needs no version rows at all.
        ASSIGN_OR_RETURN(std::string d, driver_sql(args));
        sql = "SELECT count(*) FROM (" + d + ") m";
        RETURN_IF_ERROR(conditions("m", Rows::kSeqOnly, sql, args));
      } else if (driver < 0 && !as_of) {
        // `current` holds exactly the live versions, keyed by type.
        sql = "SELECT count(*) FROM current c";
        RETURN_IF_ERROR(conditions("c", Rows::kCurrent, sql, args));
      } else {
        ASSIGN_OR_RETURN(std::string from, relation(args));
        sql = "SELECT count(*) FROM " + from;
        RETURN_IF_ERROR(conditions("c", Rows::kVersions, sql, args));
      }
      if (q.explain) RETURN_IF_ERROR(explain(sql, args));
      int64_t start = NowMicros();
      ASSIGN_OR_RETURN(page.total, runner_.QueryInt(sql, args));
      if (q.explain) timed(start);
    }
    if (!q.as_of_seq && (page.has_more || q.offset > 0 || q.after_seq)) {
      ASSIGN_OR_RETURN(page.snapshot_seq, runner_.NewestSeq());
    }
    return page;
  }

 private:
  Dialect dialect_;
  SqlRunner& runner_;
};

}  // namespace

Result<SearchPage> RunSearch(Dialect dialect, const SearchQuery& query, SqlRunner& runner) {
  return Compiler(dialect, runner).Search(query);
}

Result<std::vector<SqlRunner::BatchResult>> SqlRunner::QueryBatch(
    const std::vector<BatchStatement>& batch) {
  std::vector<BatchResult> out(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchStatement& s = batch[i];
    if (s.versions) {
      ASSIGN_OR_RETURN(out[i].versions,
                       QueryVersions(s.sql, s.args, s.extra ? &out[i].number : nullptr));
    } else {
      ASSIGN_OR_RETURN(out[i].number, QueryInt(s.sql, s.args));
    }
  }
  return out;
}

namespace {

using BatchStatement = SqlRunner::BatchStatement;
using BatchResult = SqlRunner::BatchResult;

// The compiler is run twice per search of a batch. First over a Recorder, which runs nothing: it
// keeps the statements asked for and answers with nothing found. A search that asked for exactly
// one statement (most do: no driver to choose by counting, no count after the page) is batched;
// the compiler then runs again over a Replayer, which answers that statement with its real
// result, so that everything after it (has_more, the total, the snapshot) is worked out as
// RunSearch always does.
class Recorder : public SqlRunner {
 public:
  explicit Recorder(SqlRunner& real) : real_(real) {}
  Result<int64_t> QueryInt(const std::string& sql, const std::vector<SqlArg>& args) override {
    statements.push_back({sql, args, false, false});
    return 0;
  }
  Result<std::vector<VersionRecord>> QueryVersions(const std::string& sql,
                                                   const std::vector<SqlArg>& args,
                                                   int64_t* extra) override {
    statements.push_back({sql, args, true, extra != nullptr});
    return std::vector<VersionRecord>();
  }
  Result<std::vector<std::string>> Explain(const std::string&,
                                           const std::vector<SqlArg>&) override {
    return Status::Internal("a batched search does not explain");
  }
  Result<std::vector<std::string>> QueryTexts(const std::string&,
                                              const std::vector<SqlArg>&) override {
    return Status::Internal("a batched search reads no texts");
  }
  int64_t IndexKey(std::string_view type, std::string_view param) override {
    return real_.IndexKey(type, param);
  }
  Result<int64_t> NewestSeq() override { return 0; }

  std::vector<BatchStatement> statements;

 private:
  SqlRunner& real_;
};

bool SameArgs(const std::vector<SqlArg>& a, const std::vector<SqlArg>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].kind != b[i].kind || a[i].text != b[i].text || a[i].i != b[i].i ||
        !(a[i].d == b[i].d)) {
      return false;
    }
  }
  return true;
}

class Replayer : public SqlRunner {
 public:
  Replayer(SqlRunner& real, const BatchStatement& recorded, BatchResult& result)
      : real_(real), recorded_(recorded), result_(result) {}
  // The recorded statement again gets its result; anything else (a count after a full page, or a
  // statement that came out differently, as when a parameter was first numbered in between)
  // runs for real.
  Result<int64_t> QueryInt(const std::string& sql, const std::vector<SqlArg>& args) override {
    if (!Replays(sql, args, false)) return real_.QueryInt(sql, args);
    return result_.number;
  }
  Result<std::vector<VersionRecord>> QueryVersions(const std::string& sql,
                                                   const std::vector<SqlArg>& args,
                                                   int64_t* extra) override {
    if (!Replays(sql, args, true)) return real_.QueryVersions(sql, args, extra);
    if (extra && !result_.versions.empty()) *extra = result_.number;
    return std::move(result_.versions);
  }
  Result<std::vector<std::string>> Explain(const std::string& sql,
                                           const std::vector<SqlArg>& args) override {
    return real_.Explain(sql, args);
  }
  Result<std::vector<std::string>> QueryTexts(const std::string& sql,
                                              const std::vector<SqlArg>& args) override {
    return real_.QueryTexts(sql, args);
  }
  int64_t IndexKey(std::string_view type, std::string_view param) override {
    return real_.IndexKey(type, param);
  }
  Result<int64_t> NewestSeq() override { return real_.NewestSeq(); }

 private:
  bool Replays(const std::string& sql, const std::vector<SqlArg>& args, bool versions) {
    if (used_++) return false;
    return versions == recorded_.versions && sql == recorded_.sql && SameArgs(args, recorded_.args);
  }

  SqlRunner& real_;
  const BatchStatement& recorded_;
  BatchResult& result_;
  int used_ = 0;
};

}  // namespace

Result<std::vector<SearchPage>> RunSearchBatch(Dialect dialect,
                                               const std::vector<SearchQuery>& queries,
                                               SqlRunner& runner) {
  std::vector<SearchPage> pages(queries.size());
  std::vector<BatchStatement> batch;
  std::vector<size_t> batched;  // the queries whose one statement is in `batch`, in order
  std::vector<size_t> alone;
  for (size_t i = 0; i < queries.size(); ++i) {
    if (queries[i].explain) {
      alone.push_back(i);
      continue;
    }
    Recorder recorder(runner);
    RETURN_IF_ERROR(Compiler(dialect, recorder).Search(queries[i]).status());
    if (recorder.statements.size() == 1) {
      batch.push_back(std::move(recorder.statements.front()));
      batched.push_back(i);
    } else {
      alone.push_back(i);
    }
  }
  if (!batch.empty()) {
    ASSIGN_OR_RETURN(std::vector<BatchResult> results, runner.QueryBatch(batch));
    for (size_t k = 0; k < batched.size(); ++k) {
      Replayer replayer(runner, batch[k], results[k]);
      ASSIGN_OR_RETURN(pages[batched[k]], Compiler(dialect, replayer).Search(queries[batched[k]]));
    }
  }
  for (size_t i : alone) {
    ASSIGN_OR_RETURN(pages[i], Compiler(dialect, runner).Search(queries[i]));
  }
  return pages;
}

std::string PairName(std::string_view type, std::string_view param) {
  std::string n;
  n.reserve(type.size() + param.size() + 1);
  n.append(type).append(1, '\t').append(param);
  return n;
}

Result<HistoryPage> RunHistory(const HistoryQuery& q, SqlRunner& runner) {
  std::string where = " WHERE 1=1";
  std::vector<SqlArg> args;
  if (!q.type.empty()) {
    where += " AND v.type=?";
    args.push_back({SqlArg::kText, q.type});
  }
  if (!q.id.empty()) {
    where += " AND v.id=?";
    args.push_back({SqlArg::kText, q.id});
  }
  if (q.since) {
    where += " AND v.ts>=?";
    args.push_back({SqlArg::kInt, {}, *q.since});
  }
  if (q.at) {
    // The version current at that instant: none of the resource's later versions is older.
    where +=
        " AND v.ts<=? AND NOT EXISTS (SELECT 1 FROM versions w WHERE w.type=v.type AND "
        "w.id=v.id AND w.version>v.version AND w.ts<=?)";
    args.push_back({SqlArg::kInt, {}, *q.at});
    args.push_back({SqlArg::kInt, {}, *q.at});
  }
  HistoryPage page;
  ASSIGN_OR_RETURN(page.total, runner.QueryInt("SELECT count(*) FROM versions v" + where, args));
  if (q.before_seq) {
    where += " AND v.seq<?";
    args.push_back({SqlArg::kInt, {}, *q.before_seq});
  }
  args.push_back({SqlArg::kInt, {}, q.count + 1});
  ASSIGN_OR_RETURN(page.entries, runner.QueryVersions("SELECT v.type, v.id, v.version, v.ts, "
                                                      "v.deleted, v.method, v.body, v.seq FROM "
                                                      "versions v" +
                                                          where + " ORDER BY v.seq DESC LIMIT ?",
                                                      args));
  if (static_cast<int64_t>(page.entries.size()) > q.count) {
    page.entries.pop_back();
    page.next_before_seq = page.entries.back().seq;
  }
  return page;
}

Result<std::vector<std::string>> RunReferringTypes(
    Dialect /*dialect: both name pairs by number*/, const std::string& target_type,
    const std::string& target_id, const std::vector<std::pair<std::string, std::string>>& links,
    SqlRunner& runner) {
  if (links.empty()) return std::vector<std::string>();
  // One seek per (type, param) pair on the reference index's key, which stops at the first live
  // row: a patient has hundreds of observations, and one is enough to put Observation in. Both
  // dialects name a VALUES list's columns column1, column2 ... Rows name a pair by its number
  // (search_sql.h), so the list pairs that number with the type.
  std::string sql = "SELECT DISTINCT l.column2 FROM (VALUES ";
  std::vector<SqlArg> args;
  for (size_t i = 0; i < links.size(); ++i) {
    // The cast types the list's column on PostgreSQL, where bound values arrive untyped.
    sql += i ? ",(CAST(? AS INTEGER),?)" : "(CAST(? AS INTEGER),?)";
    args.push_back({SqlArg::kInt, {}, runner.IndexKey(links[i].first, links[i].second)});
    args.push_back({SqlArg::kText, links[i].first});
  }
  sql += std::string(") l WHERE EXISTS (SELECT 1 FROM idx_ref r WHERE r.tp=l.column1") +
         " AND r.target=? AND r.target_type=? AND NOT EXISTS (SELECT 1 FROM superseded x WHERE "
         "x.seq=r.seq))";
  args.push_back({SqlArg::kText, target_id});
  args.push_back({SqlArg::kText, target_type});
  return runner.QueryTexts(sql, args);
}

}  // namespace taproot::store::sql
