//! OData query options of the Batch list and get operations: `$filter`, `$select` and `$expand`,
//! evaluated against entities held as wire JSON (`serde_json::Value`, camelCase keys).
//!
//! Owns: the `$filter` grammar Azure Batch accepts (OData v3 subset) and its evaluation, the
//! table of properties each list lets `$filter` use (Microsoft's "OData filters in Azure Batch"
//! reference, widened where noted), `$select` projection, `$expand` validation, and the
//! [`ODataError`] that the caller turns into Azure's 400 `InvalidQueryParameterValue`.
//! Must not do: IO, HTTP, SQL, or build error bodies; it knows entities only as JSON values.
//!
//! Evaluation semantics (two-valued, as OData v4 defines them for null):
//! - String values compare case-insensitively (Azure: "property names are case-sensitive, but
//!   property values are case insensitive"), ids and enums alike; `startswith` too.
//! - A missing or `null` property: `eq null` is true, `ne null` false; `ne <value>` is **true**
//!   (null is not equal to any value), every other comparison and `startswith` is false.
//!   `not` negates that, so `not (executionInfo/exitCode gt 0)` keeps tasks that never ran.
//! - Datetimes compare as instants; a property holding an unparsable time compares false.
//! - Numbers compare numerically (exactly when both are integers).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};

use self::Ty::{Bool, Keyword, Number, Text, Time};

/// Which list an expression is evaluated for; decides which properties `$filter` may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// `GET /pools`.
    Pools,
    /// `GET /pools/{poolId}/nodes`.
    Nodes,
    /// `GET /jobs` and `GET /jobschedules/{id}/jobs`.
    Jobs,
    /// `GET /jobschedules`.
    JobSchedules,
    /// `GET /jobs/{jobId}/tasks`.
    Tasks,
    /// `GET /pools/{poolId}/nodes/{nodeId}/files`.
    NodeFiles,
    /// `GET /jobs/{jobId}/tasks/{taskId}/files`.
    TaskFiles,
    /// `GET /nodecounts`.
    PoolNodeCounts,
    /// `GET /supportedimages`.
    SupportedImages,
    /// `GET /nodeagentskus` (2017-era api-versions).
    NodeAgentSkus,
    /// `GET /certificates`.
    Certificates,
    /// `GET /applications` (Azure defines no `$filter` here; see [`ListKind::filter_properties`]).
    Applications,
    /// `GET /poolusagemetrics`.
    PoolUsageMetrics,
    /// `GET /jobs/{jobId}/jobpreparationandreleasetaskstatus`.
    JobPrepReleaseStatus,
    /// `GET /jobs/{jobId}/tasks/{taskId}/subtasksinfo` (Azure defines no `$filter` here).
    Subtasks,
}

impl ListKind {
    /// Every list kind.
    pub const ALL: [ListKind; 15] = [
        Self::Pools,
        Self::Nodes,
        Self::Jobs,
        Self::JobSchedules,
        Self::Tasks,
        Self::NodeFiles,
        Self::TaskFiles,
        Self::PoolNodeCounts,
        Self::SupportedImages,
        Self::NodeAgentSkus,
        Self::Certificates,
        Self::Applications,
        Self::PoolUsageMetrics,
        Self::JobPrepReleaseStatus,
        Self::Subtasks,
    ];

    /// The property paths `$filter` accepts on this list, as they are written in a filter.
    pub fn filter_properties(self) -> impl Iterator<Item = &'static str> {
        table(self).iter().map(|(name, _)| *name)
    }
}

/// An invalid query option. The caller answers Azure's 400 `InvalidQueryParameterValue`
/// ([`ODataError::CODE`]) with [`ODataError::values`] as the error's `values`.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct ODataError {
    /// The query parameter: `$filter`, `$select` or `$expand`.
    pub parameter: &'static str,
    /// The parameter's value as received.
    pub value: String,
    /// What is wrong with it, for humans.
    pub reason: String,
}

impl ODataError {
    /// The Azure error code an `ODataError` maps to (HTTP 400).
    pub const CODE: &'static str = "InvalidQueryParameterValue";

    fn new(parameter: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            parameter,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// The `values` entries of Azure's error body: `QueryParameterName`,
    /// `QueryParameterValue` and `Reason`.
    pub fn values(&self) -> [(&'static str, &str); 3] {
        [
            ("QueryParameterName", self.parameter),
            ("QueryParameterValue", &self.value),
            ("Reason", &self.reason),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Filterable properties
// ---------------------------------------------------------------------------------------------

/// A filterable property's type, which decides the operators and literals it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    /// A free string (ids, names): eq, ne, gt, ge, lt, le, startswith.
    Text,
    /// An enum-like string (state, osType, vmSize): eq, ne.
    Keyword,
    /// A datetime: eq, ne, gt, ge, lt, le.
    Time,
    /// An integer or decimal: eq, ne, gt, ge, lt, le.
    Number,
    /// A boolean: eq, ne.
    Bool,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Text | Keyword => "String",
            Time => "DateTime",
            Number => "Number",
            Bool => "Boolean",
        }
    }
}

type Table = &'static [(&'static str, Ty)];

/// Filter names Azure documents that differ from the JSON key they filter on.
const ALIASES: &[(&str, &str)] = &[("lastModifiedTime", "lastModified")];

// Each table lists Microsoft's documented properties first, then (after the blank line) the
// properties Cobalt accepts beyond the documentation.
const POOLS: Table = &[
    ("id", Text),
    ("state", Keyword),
    ("stateTransitionTime", Time),
    ("allocationState", Keyword),
    ("allocationStateTransitionTime", Time),
    ("creationTime", Time),
    ("enableAutoScale", Bool),
    ("lastModified", Time),
    ("vmSize", Keyword),
    ("enableInterNodeCommunication", Bool),
    //
    ("displayName", Text),
    ("currentDedicatedNodes", Number),
    ("currentLowPriorityNodes", Number),
    ("targetDedicatedNodes", Number),
    ("targetLowPriorityNodes", Number),
    ("taskSlotsPerNode", Number),
    ("maxTasksPerNode", Number),
];

const NODES: Table = &[
    ("state", Keyword),
    ("stateTransitionTime", Time),
    ("lastBootTime", Time),
    ("allocationTime", Time),
    ("startTaskInfo/state", Keyword),
    ("startTaskInfo/result", Keyword),
    ("startTaskInfo/exitCode", Number),
    ("startTaskInfo/startTime", Time),
    ("startTaskInfo/endTime", Time),
    //
    ("id", Text),
    ("schedulingState", Keyword),
    ("isDedicated", Bool),
    ("vmSize", Keyword),
    ("ipAddress", Text),
    ("affinityId", Text),
    ("totalTasksRun", Number),
    ("totalTasksSucceeded", Number),
    ("runningTasksCount", Number),
    ("runningTaskSlotsCount", Number),
    ("startTaskInfo/retryCount", Number),
];

const JOBS: Table = &[
    ("id", Text),
    ("state", Keyword),
    ("stateTransitionTime", Time),
    ("creationTime", Time),
    ("lastModified", Time),
    ("executionInfo/startTime", Time),
    ("executionInfo/endTime", Time),
    ("executionInfo/poolId", Text),
    //
    ("displayName", Text),
    ("previousState", Keyword),
    ("previousStateTransitionTime", Time),
    ("priority", Number),
    ("maxParallelTasks", Number),
    ("usesTaskDependencies", Bool),
    ("allowTaskPreemption", Bool),
    ("onAllTasksComplete", Keyword),
    ("onTaskFailure", Keyword),
    ("poolInfo/poolId", Text),
    ("executionInfo/terminateReason", Text),
];

const JOB_SCHEDULES: Table = &[
    ("id", Text),
    ("state", Keyword),
    ("stateTransitionTime", Time),
    ("creationTime", Time),
    ("lastModified", Time),
    ("executionInfo/endTime", Time),
    ("schedule/doNotRunUntil", Time),
    ("schedule/doNotRunAfter", Time),
    //
    ("displayName", Text),
    ("previousState", Keyword),
    ("previousStateTransitionTime", Time),
    ("executionInfo/nextRunTime", Time),
    ("executionInfo/recentJob/id", Text),
];

const TASKS: Table = &[
    ("id", Text),
    ("state", Keyword),
    ("stateTransitionTime", Time),
    ("creationTime", Time),
    ("lastModifiedTime", Time),
    ("executionInfo/startTime", Time),
    ("executionInfo/endTime", Time),
    ("executionInfo/exitCode", Number),
    ("executionInfo/result", Keyword),
    //
    ("lastModified", Time),
    ("displayName", Text),
    ("commandLine", Text),
    ("previousState", Keyword),
    ("previousStateTransitionTime", Time),
    ("requiredSlots", Number),
    ("affinityInfo/affinityId", Text),
    ("constraints/maxTaskRetryCount", Number),
    ("executionInfo/retryCount", Number),
    ("executionInfo/requeueCount", Number),
    ("executionInfo/lastRetryTime", Time),
    ("executionInfo/lastRequeueTime", Time),
    ("executionInfo/failureInfo/category", Keyword),
    ("executionInfo/failureInfo/code", Text),
    ("nodeInfo/nodeId", Text),
    ("nodeInfo/poolId", Text),
    ("nodeInfo/affinityId", Text),
    ("nodeInfo/nodeUrl", Text),
    ("multiInstanceSettings/numberOfInstances", Number),
];

const FILES: Table = &[
    ("name", Text),
    //
    ("isDirectory", Bool),
    ("properties/creationTime", Time),
    ("properties/lastModified", Time),
    ("properties/contentLength", Number),
];

const POOL_NODE_COUNTS: Table = &[("poolId", Text)];

const SUPPORTED_IMAGES: Table = &[
    ("osType", Keyword),
    ("verificationType", Keyword),
    ("nodeAgentSKUId", Keyword),
    //
    ("imageReference/publisher", Text),
    ("imageReference/offer", Text),
    ("imageReference/sku", Text),
    ("imageReference/version", Text),
    ("batchSupportEndOfLife", Time),
];

const NODE_AGENT_SKUS: Table = &[
    ("osType", Keyword),
    //
    ("id", Text),
];

const CERTIFICATES: Table = &[
    ("state", Keyword),
    ("stateTransitionTime", Time),
    //
    ("thumbprint", Text),
    ("thumbprintAlgorithm", Keyword),
    ("previousState", Keyword),
    ("previousStateTransitionTime", Time),
];

const APPLICATIONS: Table = &[("id", Text), ("displayName", Text)];

const POOL_USAGE_METRICS: Table = &[
    ("poolId", Text),
    //
    ("vmSize", Keyword),
    ("startTime", Time),
    ("endTime", Time),
    ("totalCoreHours", Number),
];

const JOB_PREP_RELEASE_STATUS: Table = &[
    ("poolId", Keyword),
    ("nodeId", Keyword),
    ("jobPreparationTaskExecutionInfo/state", Keyword),
    ("jobPreparationTaskExecutionInfo/startTime", Time),
    ("jobPreparationTaskExecutionInfo/endTime", Time),
    ("jobPreparationTaskExecutionInfo/exitCode", Number),
    ("jobPreparationTaskExecutionInfo/result", Keyword),
    ("jobReleaseTaskExecutionInfo/state", Keyword),
    ("jobReleaseTaskExecutionInfo/startTime", Time),
    ("jobReleaseTaskExecutionInfo/endTime", Time),
    ("jobReleaseTaskExecutionInfo/exitCode", Number),
    ("jobReleaseTaskExecutionInfo/result", Keyword),
    //
    ("nodeUrl", Text),
    ("jobPreparationTaskExecutionInfo/retryCount", Number),
];

const SUBTASKS: Table = &[
    ("id", Number),
    ("state", Keyword),
    ("stateTransitionTime", Time),
    ("previousState", Keyword),
    ("startTime", Time),
    ("endTime", Time),
    ("exitCode", Number),
    ("result", Keyword),
    ("nodeInfo/nodeId", Text),
];

fn table(kind: ListKind) -> Table {
    match kind {
        ListKind::Pools => POOLS,
        ListKind::Nodes => NODES,
        ListKind::Jobs => JOBS,
        ListKind::JobSchedules => JOB_SCHEDULES,
        ListKind::Tasks => TASKS,
        ListKind::NodeFiles | ListKind::TaskFiles => FILES,
        ListKind::PoolNodeCounts => POOL_NODE_COUNTS,
        ListKind::SupportedImages => SUPPORTED_IMAGES,
        ListKind::NodeAgentSkus => NODE_AGENT_SKUS,
        ListKind::Certificates => CERTIFICATES,
        ListKind::Applications => APPLICATIONS,
        ListKind::PoolUsageMetrics => POOL_USAGE_METRICS,
        ListKind::JobPrepReleaseStatus => JOB_PREP_RELEASE_STATUS,
        ListKind::Subtasks => SUBTASKS,
    }
}

/// A property a filter names, resolved against its list's table.
#[derive(Clone, Copy, Debug)]
struct Prop {
    /// As written in the filter.
    name: &'static str,
    /// The JSON path it reads, segments separated by '/'.
    path: &'static str,
    ty: Ty,
}

fn resolve(kind: ListKind, name: &str) -> Result<Prop, String> {
    let Some(&(name, ty)) = table(kind).iter().find(|(n, _)| *n == name) else {
        let supported: Vec<&str> = kind.filter_properties().collect();
        return Err(format!(
            "The property '{name}' cannot be used in $filter on this list. \
             Supported properties: {}.",
            supported.join(", ")
        ));
    };
    let path = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, path)| path);
    Ok(Prop { name, path, ty })
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

/// A numeric literal.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

/// A token of `$filter`.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    /// A keyword or a property path (`executionInfo/exitCode`).
    Word(String),
    /// A quoted string, `''` unescaped.
    Str(String),
    Num(Num),
    /// `datetime'…'`, `DateTime'…'`, `datetimeoffset'…'` or a bare ISO 8601 timestamp.
    Time(DateTime<FixedOffset>),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".to_owned(),
            Tok::RParen => "')'".to_owned(),
            Tok::Comma => "','".to_owned(),
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("the string '{s}'"),
            Tok::Num(Num::Int(n)) => format!("the number {n}"),
            Tok::Num(Num::Float(n)) => format!("the number {n}"),
            Tok::Time(t) => format!("the datetime {}", t.to_rfc3339()),
            Tok::End => "the end of the filter".to_owned(),
        }
    }
}

struct Lexer {
    chars: Vec<(usize, char)>,
    i: usize,
}

/// Splits `text` into tokens with their byte offsets; the last token is [`Tok::End`].
fn lex(text: &str) -> Result<Vec<(usize, Tok)>, String> {
    let mut lexer = Lexer {
        chars: text.char_indices().collect(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        while lexer.peek().is_some_and(char::is_whitespace) {
            lexer.i += 1;
        }
        let Some(&(pos, c)) = lexer.chars.get(lexer.i) else {
            out.push((text.len(), Tok::End));
            return Ok(out);
        };
        let tok = match c {
            '(' | ')' | ',' => {
                lexer.i += 1;
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    _ => Tok::Comma,
                }
            }
            '\'' => Tok::Str(lexer.string(pos)?),
            c if c.is_ascii_digit() || c == '-' => lexer.number_or_time(pos)?,
            c if c.is_alphabetic() || c == '_' => lexer.word(pos)?,
            c => return Err(format!("Unexpected character '{c}' at position {pos}.")),
        };
        out.push((pos, tok));
    }
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).map(|&(_, c)| c)
    }

    /// Reads a quoted string starting at the opening quote.
    fn string(&mut self, start: usize) -> Result<String, String> {
        self.i += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("Unterminated string starting at position {start}.")),
                Some('\'') if self.chars.get(self.i + 1).is_some_and(|&(_, c)| c == '\'') => {
                    s.push('\'');
                    self.i += 2;
                }
                Some('\'') => {
                    self.i += 1;
                    return Ok(s);
                }
                Some(c) => {
                    s.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// Reads the longest run of characters satisfying `accept`.
    fn run(&mut self, accept: impl Fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|&c| accept(c)) {
            s.push(c);
            self.i += 1;
        }
        s
    }

    /// Reads a keyword or property path, or a `datetime'…'` literal.
    fn word(&mut self, start: usize) -> Result<Tok, String> {
        let word = self.run(|c| c.is_alphanumeric() || c == '_' || c == '/');
        let typed =
            word.eq_ignore_ascii_case("datetime") || word.eq_ignore_ascii_case("datetimeoffset");
        if typed && self.peek() == Some('\'') {
            let text = self.string(start)?;
            return parse_time(&text)
                .map(Tok::Time)
                .ok_or_else(|| format!("'{text}' at position {start} is not a valid datetime."));
        }
        Ok(Tok::Word(word))
    }

    /// Reads a number (`-3`, `2.5`, `10L`) or a bare timestamp (`2026-11-21T07:00:00Z`).
    fn number_or_time(&mut self, start: usize) -> Result<Tok, String> {
        let text = self.run(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '+' | '-'));
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Tok::Num(Num::Int(n)));
        }
        // OData v3 type suffixes: 10L (Int64), 2.5d (Double), 2.5m (Decimal), 2.5f (Single).
        let bare = text.trim_end_matches(['L', 'l', 'd', 'D', 'm', 'M', 'f', 'F']);
        if let Ok(n) = bare.parse::<i64>() {
            return Ok(Tok::Num(Num::Int(n)));
        }
        // Rejects what f64 accepts but OData does not: "inf", "NaN", "-infinity".
        let numeric = !bare.contains(['i', 'I', 'n', 'N']);
        if let Ok(n) = bare.parse::<f64>()
            && numeric
        {
            return Ok(Tok::Num(Num::Float(n)));
        }
        if text.contains(['T', 't'])
            && let Some(t) = parse_time(&text)
        {
            return Ok(Tok::Time(t));
        }
        Err(format!(
            "'{text}' at position {start} is not a valid literal."
        ))
    }
}

/// Parses the datetime forms Azure and the SDKs use: RFC 3339 / ISO 8601 with an offset
/// (any number of fractional digits), RFC 1123 (`Sun, 08 May 2011 08:49:37 GMT`), and ISO
/// 8601 without an offset or a bare date, both read as UTC.
fn parse_time(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(t);
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(naive.and_utc().fixed_offset())
}

/// Folds a string for Azure's case-insensitive value comparisons.
fn fold(s: &str) -> String {
    s.to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// AST and evaluation
// ---------------------------------------------------------------------------------------------

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    const WORDS: [(&'static str, Op); 6] = [
        ("eq", Op::Eq),
        ("ne", Op::Ne),
        ("gt", Op::Gt),
        ("ge", Op::Ge),
        ("lt", Op::Lt),
        ("le", Op::Le),
    ];

    fn from_word(word: &str) -> Option<Op> {
        Self::WORDS
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, op)| *op)
    }

    fn as_str(self) -> &'static str {
        Self::WORDS
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("?", |(w, _)| w)
    }

    fn is_equality(self) -> bool {
        matches!(self, Op::Eq | Op::Ne)
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord.is_eq(),
            Op::Ne => ord.is_ne(),
            Op::Gt => ord.is_gt(),
            Op::Ge => ord.is_ge(),
            Op::Lt => ord.is_lt(),
            Op::Le => ord.is_le(),
        }
    }
}

/// A literal, already checked against the property's type.
#[derive(Clone, Debug)]
enum Lit {
    Null,
    Bool(bool),
    Num(Num),
    /// `raw` as written, `folded` for comparing.
    Str {
        raw: String,
        folded: String,
    },
    Time(DateTime<FixedOffset>),
}

/// `property op literal`.
#[derive(Clone, Debug)]
struct Cmp {
    prop: Prop,
    op: Op,
    lit: Lit,
}

#[derive(Clone, Debug)]
enum Expr {
    /// The empty filter.
    All,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Cmp),
    /// `startswith(path, prefix)`, `prefix` folded.
    StartsWith {
        path: &'static str,
        prefix: String,
    },
}

/// The value at `path` ('/'-separated), or `None` when absent or `null`.
fn lookup<'v>(entity: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('/')
        .try_fold(entity, |value, key| value.get(key))
        .filter(|value| !value.is_null())
}

fn compare_numbers(actual: &serde_json::Number, lit: Num) -> Option<Ordering> {
    match (actual.as_i64(), lit) {
        (Some(a), Num::Int(b)) => Some(a.cmp(&b)),
        _ => {
            let b = match lit {
                Num::Int(b) => b as f64,
                Num::Float(b) => b,
            };
            actual.as_f64()?.partial_cmp(&b)
        }
    }
}

/// How `actual` orders against `lit`, or `None` when they cannot be compared.
fn compare(actual: &Value, lit: &Lit) -> Option<Ordering> {
    match (actual, lit) {
        (Value::String(a), Lit::Str { folded, .. }) => Some(fold(a).cmp(folded)),
        (Value::String(a), Lit::Time(b)) => Some(parse_time(a)?.cmp(b)),
        (Value::Number(a), Lit::Num(b)) => compare_numbers(a, *b),
        (Value::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

impl Cmp {
    fn eval(&self, entity: &Value) -> bool {
        let actual = lookup(entity, self.prop.path);
        match (&self.lit, actual) {
            (Lit::Null, actual) => (self.op == Op::Eq) == actual.is_none(),
            (_, None) => self.op == Op::Ne,
            (lit, Some(actual)) => match compare(actual, lit) {
                Some(ord) => self.op.holds(ord),
                None => self.op == Op::Ne,
            },
        }
    }
}

impl Expr {
    fn eval(&self, entity: &Value) -> bool {
        match self {
            Expr::All => true,
            Expr::And(all) => all.iter().all(|e| e.eval(entity)),
            Expr::Or(any) => any.iter().any(|e| e.eval(entity)),
            Expr::Not(e) => !e.eval(entity),
            Expr::Cmp(c) => c.eval(entity),
            Expr::StartsWith { path, prefix } => lookup(entity, path)
                .and_then(Value::as_str)
                .is_some_and(|s| fold(s).starts_with(prefix.as_str())),
        }
    }

    /// The `eq` string pinned on `property` by this expression's top-level conjuncts.
    fn required_eq(&self, property: &str) -> Option<&str> {
        match self {
            Expr::And(all) => all.iter().find_map(|e| e.required_eq(property)),
            Expr::Cmp(Cmp {
                prop,
                op: Op::Eq,
                lit: Lit::Str { raw, .. },
            }) if prop.name == property || prop.path == property => Some(raw),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// How deeply parentheses and `not` may nest.
const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    kind: ListKind,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::End, |(_, t)| t)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        self.toks.get(self.i + ahead).map_or(&Tok::End, |(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(0, |(p, _)| *p)
    }

    fn next(&mut self) -> Tok {
        let tok = self.peek().clone();
        self.i += 1;
        tok
    }

    fn unexpected(&self, expected: &str) -> String {
        format!(
            "Expected {expected} at position {} but found {}.",
            self.pos(),
            self.peek().describe()
        )
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Tok::Word(w) if w == word);
        if found {
            self.i += 1;
        }
        found
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> Result<(), String> {
        if self.peek() != tok {
            return Err(self.unexpected(expected));
        }
        self.i += 1;
        Ok(())
    }

    /// `filter := or_expr End`, or nothing at all.
    fn filter(&mut self) -> Result<Expr, String> {
        if *self.peek() == Tok::End {
            return Ok(Expr::All);
        }
        let expr = self.or_expr()?;
        self.expect(&Tok::End, "'and', 'or' or the end of the filter")?;
        Ok(expr)
    }

    /// `or_expr := and_expr ("or" and_expr)*`
    fn or_expr(&mut self) -> Result<Expr, String> {
        let mut any = vec![self.and_expr()?];
        while self.eat_word("or") {
            any.push(self.and_expr()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Expr::Or(any)
        })
    }

    /// `and_expr := unary ("and" unary)*`
    fn and_expr(&mut self) -> Result<Expr, String> {
        let mut all = vec![self.unary()?];
        while self.eat_word("and") {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And(all)
        })
    }

    /// `unary := "not" unary | primary`. `not` binds tighter than `and`/`or` and applies to
    /// the whole comparison that follows it: `not state eq 'active'`.
    fn unary(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("The filter nests deeper than {MAX_DEPTH} levels."));
        }
        let expr = if self.eat_word("not") {
            Expr::Not(Box::new(self.unary()?))
        } else {
            self.primary()?
        };
        self.depth -= 1;
        Ok(expr)
    }

    /// `primary := "(" or_expr ")" | startswith | comparison`
    fn primary(&mut self) -> Result<Expr, String> {
        let call = *self.peek_at(1) == Tok::LParen;
        match self.peek() {
            Tok::LParen => {
                self.i += 1;
                let expr = self.or_expr()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(expr)
            }
            Tok::Word(w) if call && w == "startswith" => self.startswith(),
            Tok::Word(w) if call => Err(format!(
                "The function '{w}' at position {} is not supported; \
                 Azure Batch supports only startswith.",
                self.pos()
            )),
            Tok::Word(_) => self.comparison(),
            _ => Err(self.unexpected("a property name, 'not', 'startswith' or '('")),
        }
    }

    /// Reads a property name and resolves it against the list's table.
    fn property(&mut self) -> Result<Prop, String> {
        match self.peek().clone() {
            Tok::Word(name) => {
                let prop = resolve(self.kind, &name)?;
                self.i += 1;
                Ok(prop)
            }
            _ => Err(self.unexpected("a property name")),
        }
    }

    /// `startswith "(" property "," string ")" [("eq" | "ne") ("true" | "false")]`
    fn startswith(&mut self) -> Result<Expr, String> {
        self.i += 2;
        let prop = self.property()?;
        if prop.ty != Text {
            return Err(format!(
                "startswith is not supported for the property '{}'.",
                prop.name
            ));
        }
        self.expect(&Tok::Comma, "','")?;
        let Tok::Str(prefix) = self.next() else {
            self.i -= 1;
            return Err(self.unexpected("a string literal"));
        };
        self.expect(&Tok::RParen, "')'")?;
        let expr = Expr::StartsWith {
            path: prop.path,
            prefix: fold(&prefix),
        };
        let Some(op) = self.peek_op() else {
            return Ok(expr);
        };
        self.i += 1;
        let wanted = match (op, self.next()) {
            (Op::Eq | Op::Ne, Tok::Word(w)) if w == "true" || w == "false" => w == "true",
            _ => {
                self.i -= 1;
                return Err(self.unexpected("true or false after startswith(...) eq/ne"));
            }
        };
        Ok(if wanted == (op == Op::Eq) {
            expr
        } else {
            Expr::Not(Box::new(expr))
        })
    }

    fn peek_op(&self) -> Option<Op> {
        match self.peek() {
            Tok::Word(w) => Op::from_word(w),
            _ => None,
        }
    }

    /// `comparison := property op literal`
    fn comparison(&mut self) -> Result<Expr, String> {
        let prop = self.property()?;
        let Some(op) = self.peek_op() else {
            return Err(self.unexpected("a comparison operator (eq, ne, gt, ge, lt, le)"));
        };
        self.i += 1;
        let literal = match self.peek() {
            Tok::Str(_) | Tok::Num(_) | Tok::Time(_) => true,
            Tok::Word(w) => matches!(w.as_str(), "null" | "true" | "false"),
            _ => false,
        };
        if !literal {
            return Err(self.unexpected("a literal (strings are quoted: 'value')"));
        }
        let pos = self.pos();
        let lit = typed_literal(prop, op, self.next())
            .map_err(|reason| format!("{reason} (position {pos})"))?;
        Ok(Expr::Cmp(Cmp { prop, op, lit }))
    }
}

/// Checks `tok` as the literal of `prop op tok` and converts it to `prop`'s type.
fn typed_literal(prop: Prop, op: Op, tok: Tok) -> Result<Lit, String> {
    let ordered = matches!(prop.ty, Text | Time | Number);
    if !op.is_equality() && !ordered {
        return Err(format!(
            "The operator '{}' is not supported for the property '{}'; use eq or ne.",
            op.as_str(),
            prop.name
        ));
    }
    let mismatch = |tok: &Tok| {
        format!(
            "The property '{}' is a {} and cannot be compared with {}.",
            prop.name,
            prop.ty.name(),
            tok.describe()
        )
    };
    Ok(match (prop.ty, tok) {
        (_, Tok::Word(w)) if w == "null" => {
            if !op.is_equality() {
                return Err(format!(
                    "The property '{}' can be compared with null only by eq or ne.",
                    prop.name
                ));
            }
            Lit::Null
        }
        (Text | Keyword, Tok::Str(raw)) => Lit::Str {
            folded: fold(&raw),
            raw,
        },
        (Time, Tok::Time(t)) => Lit::Time(t),
        (Time, Tok::Str(s)) => Lit::Time(parse_time(&s).ok_or_else(|| mismatch(&Tok::Str(s)))?),
        (Number, Tok::Num(n)) => Lit::Num(n),
        (Bool, Tok::Word(w)) if w == "true" || w == "false" => Lit::Bool(w == "true"),
        (_, tok) => return Err(mismatch(&tok)),
    })
}

// ---------------------------------------------------------------------------------------------
// Public API: Filter, Select, $expand
// ---------------------------------------------------------------------------------------------

/// A parsed `$filter`.
#[derive(Clone, Debug)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses `text` (already URL-decoded) for a list of `kind`. Errors when the syntax is
    /// wrong, a property is not filterable on that list, an operator does not apply to the
    /// property, or a literal does not fit its type. An empty or blank filter matches
    /// everything.
    pub fn parse(text: &str, kind: ListKind) -> Result<Filter, ODataError> {
        let error = |reason: String| ODataError::new("$filter", text, reason);
        let toks = lex(text).map_err(error)?;
        let mut parser = Parser {
            toks,
            i: 0,
            kind,
            depth: 0,
        };
        let expr = parser.filter().map_err(error)?;
        Ok(Filter { expr })
    }

    /// Whether `entity` (wire JSON) satisfies the filter. See the module docs for how missing
    /// properties, strings, datetimes and numbers compare.
    pub fn matches(&self, entity: &Value) -> bool {
        self.expr.eval(entity)
    }

    /// If the filter is a conjunction (or a single comparison) with a top-level conjunct
    /// `property eq 'value'`, that value **as written** (compare it case-insensitively, as
    /// Azure does), so a store can use an index and then check [`Filter::matches`]. `property`
    /// is the name as written in filters (`state`, `nodeInfo/nodeId`). `None` otherwise,
    /// including when the comparison sits under `or` or `not`.
    pub fn required_eq(&self, property: &str) -> Option<&str> {
        self.expr.required_eq(property)
    }
}

/// One level of a `$select` tree.
#[derive(Clone, Debug, Default)]
struct SelectNode {
    /// Selected whole (the path ended here).
    whole: bool,
    children: BTreeMap<String, SelectNode>,
}

/// A parsed `$select`: comma-separated property paths, nested with '/', e.g.
/// `id,state,executionInfo/exitCode`. Names are case-sensitive; blanks around names are
/// ignored; `*` selects everything.
#[derive(Clone, Debug)]
pub struct Select {
    all: bool,
    root: SelectNode,
}

impl Select {
    /// Parses `text` (already URL-decoded). Errors on an empty selection or a malformed name.
    pub fn parse(text: &str) -> Result<Select, ODataError> {
        let error = |reason: String| ODataError::new("$select", text, reason);
        let mut select = Select {
            all: false,
            root: SelectNode::default(),
        };
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                select.all = true;
                continue;
            }
            let mut node = &mut select.root;
            for segment in item.split('/').map(str::trim) {
                let valid = segment.chars().next().is_some_and(char::is_alphabetic)
                    && segment.chars().all(|c| c.is_alphanumeric() || c == '_');
                if !valid {
                    return Err(error(format!("'{item}' is not a valid property path.")));
                }
                node = node.children.entry(segment.to_owned()).or_default();
            }
            node.whole = true;
        }
        if !select.all && select.root.children.is_empty() {
            return Err(error("$select names no property.".to_owned()));
        }
        Ok(select)
    }

    /// Whether the top-level `property` is selected (wholly or in part), e.g. whether to
    /// compute `stats`, which Azure returns when selected even without `$expand`.
    pub fn includes(&self, property: &str) -> bool {
        self.all || self.root.children.contains_key(property)
    }

    /// Keeps only the selected paths of `entity` and the objects on the way to them; keys not
    /// present stay absent, and an object on the way that holds none of the selected keys is
    /// dropped. A path through an array (or a scalar) selects that value whole.
    pub fn apply(&self, entity: Value) -> Value {
        if self.all {
            return entity;
        }
        match entity {
            Value::Object(map) => Value::Object(project(&self.root, map)),
            other => other,
        }
    }
}

/// The keys of `map` that `node` selects, projected recursively.
fn project(node: &SelectNode, map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter_map(|(key, value)| {
            let child = node.children.get(&key)?;
            match value {
                Value::Object(inner) if !child.whole => {
                    let inner = project(child, inner);
                    (!inner.is_empty()).then_some((key, Value::Object(inner)))
                }
                value => Some((key, value)),
            }
        })
        .collect()
}

/// Parses `$expand`. Azure accepts only `stats` (on pools, jobs, job schedules and tasks);
/// returns whether it was requested. Blank items are ignored, so an empty `$expand` is
/// `false`; anything else is an error.
pub fn parse_expand(text: &str) -> Result<bool, ODataError> {
    let mut stats = false;
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if item != "stats" {
            return Err(ODataError::new(
                "$expand",
                text,
                format!("'{item}' cannot be expanded; $expand supports only 'stats'."),
            ));
        }
        stats = true;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;
