import Foundation

public enum Severity: String, Codable, Sendable, CaseIterable, Comparable {
    case info, warning, error
    var rank: Int { self == .info ? 0 : self == .warning ? 1 : 2 }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// A rule's id, such as `code-reuse`.
///
/// A struct, not an enum: the model does not know the rules, so adding one is a change to the analyzer alone.
/// It encodes as the plain string and orders as the string does.
public struct RuleID: RawRepresentable, Codable, Sendable, Hashable, Comparable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
    public static func < (a: RuleID, b: RuleID) -> Bool { a.rawValue < b.rawValue }
}

/// One diagnosis: which rule, how bad, why, the proof, and what to do.
public struct Finding: Codable, Sendable, Equatable {
    public var rule: RuleID
    public var severity: Severity
    public var title: String
    public var explanation: String
    public var fix: String
    /// Exchange ids that prove it, in time order.
    public var exchanges: [Int64]
    /// Index (1-based) of the transaction in the analysis, when it belongs to one.
    public var transaction: Int?
    /// The exact (masked) values or differences that prove it.
    public var evidence: [String: String]
    /// For an error: whether it is the root cause of its failure. A failure has one root; generic findings about
    /// the same response are listed in `related` and kept at info severity.
    public var rootCause: Bool?
    /// The rules whose findings this root cause explains.
    public var related: [RuleID]?
    /// For a refusal the response does not explain: each cause the capture could tell, with its status.
    public var candidates: [Candidate]?

    public init(
        rule: RuleID, severity: Severity, title: String, explanation: String, fix: String,
        exchanges: [Int64], transaction: Int? = nil, evidence: [String: String] = [:]
    ) {
        self.rule = rule
        self.severity = severity
        self.title = title
        self.explanation = explanation
        self.fix = fix
        self.exchanges = exchanges
        self.transaction = transaction
        self.evidence = evidence
    }

    /// One possible cause of a refusal, and what the capture says about it.
    public struct Candidate: Codable, Sendable, Equatable {
        public enum Status: String, Codable, Sendable {
            case ruledOut = "ruled-out"
            case supported
            case unknown
        }
        /// The cause, named as the rule that reports it (`code-reuse`, `pkce-mismatch`, …).
        public var cause: String
        public var status: Status
        public var evidence: String
        public init(_ cause: String, _ status: Status, _ evidence: String) {
            self.cause = cause
            self.status = status
            self.evidence = evidence
        }
    }

    /// Identity for de-duplication and for printing a live finding once.
    public var key: String { "\(rule.rawValue)|\(title)|\(exchanges.map(String.init).joined(separator: ","))" }
}

/// The part an exchange plays inside a transaction.
public enum Leg: String, Codable, Sendable {
    case authorize
    case authorizationResponse = "authorization-response"
    case callback
    case token
    case refresh
    case userinfo
    case introspection
    case revocation
    case device
    case par
    case other
}

/// One OAuth transaction: authorize → redirect → callback → token → userinfo/refresh, as far as it was seen.
public struct Transaction: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public var exchange: Int64
        public var leg: Leg
        public init(exchange: Int64, leg: Leg) {
            self.exchange = exchange
            self.leg = leg
        }
    }
    /// 1-based, in order of the first exchange.
    public var index: Int
    public var clientID: String?
    /// The authorization server's host (of the token endpoint, else of /authorize).
    public var serverHost: String?
    public var grantType: String?
    public var state: String?
    public var startedAt: Date
    /// `ok`, `failed at LEG`, or `incomplete`.
    public var outcome: String
    public var members: [Member]

    public init(
        index: Int, clientID: String?, serverHost: String?, grantType: String?, state: String?,
        startedAt: Date, outcome: String, members: [Member]
    ) {
        self.index = index
        self.clientID = clientID
        self.serverHost = serverHost
        self.grantType = grantType
        self.state = state
        self.startedAt = startedAt
        self.outcome = outcome
        self.members = members
    }
}

/// What the analyzer found in a set of exchanges: the transactions it rebuilt and the findings.
public struct Analysis: Codable, Sendable, Equatable {
    public var transactions: [Transaction]
    public var findings: [Finding]
    public init(transactions: [Transaction], findings: [Finding]) {
        self.transactions = transactions
        self.findings = findings
    }
}
