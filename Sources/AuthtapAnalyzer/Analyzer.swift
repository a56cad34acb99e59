import AuthtapModel
import AuthtapOAuth
import Foundation

/// Rebuilds OAuth transactions from recorded (masked) exchanges and classifies every failure.
/// Pure: reads structured facts only (status, error fields, parameters, fingerprints, timings, TLS kinds).
public struct Analyzer: Sendable {
    /// Settings a user may want to change.
    public struct Options: Sendable {
        /// A duplicate code exchange within this many seconds is the double-render / double-submit pattern.
        public var duplicateWindow: TimeInterval = 2
        /// invalid_grant after at least this gap since the code was issued points at expiry.
        public var codeLifetime: TimeInterval = 60
        /// Tolerated clock difference before a skew is reported.
        public var skewTolerance: TimeInterval = 60
        public init() {}
    }
    public var options: Options
    /// Where the authtap CA lives, for the tls-fault fix text.
    public var caPath: String

    public init(options: Options = .init(), caPath: String = "certs/authtap-ca.pem") {
        self.options = options
        self.caPath = caPath
    }

    /// - Parameters:
    ///   - handshakes: packet-level handshake records of the same session (pcap mode), if any.
    ///   - proxyPort: the port authtap listened on, to tell the client leg's handshakes from the upstream's.
    public func analyze(
        _ exchanges: [Exchange], handshakes: [HandshakeRecord] = [],
        proxyPort: Int? = nil
    ) -> Analysis {
        let facts = exchanges.sorted { ($0.id ?? 0) < ($1.id ?? 0) }.map(ExchangeFacts.init)
        var (transactions, membership) = TransactionBuilder.build(facts)
        var context = RuleContext(facts: facts, membership: membership, options: options, caPath: caPath)
        context.handshakes = handshakes
        context.proxyPort = proxyPort
        for rule in Rules.all { rule.evaluate(&context) }
        var findings = context.findings
        RootCause.assign(&findings, subjects: context.subjectOf, facts: context.byID)
        // De-duplicate (a fact seen from two sides gives one finding), then order by first exchange. The sort is
        // stable, so findings of one rule at one exchange keep the order the rule produced them in.
        var seen = Set<String>()
        findings = findings.filter { seen.insert($0.key).inserted }
        findings.sort { ($0.exchanges.first ?? 0, $0.rule) < ($1.exchanges.first ?? 0, $1.rule) }
        // Outcomes.
        let factsByID = Dictionary(facts.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let errorsByTransaction = Dictionary(
            grouping: findings.filter { $0.severity == .error && $0.transaction != nil }, by: { $0.transaction ?? 0 })
        for i in transactions.indices {
            let index = transactions[i].index
            let errors = errorsByTransaction[index] ?? []
            let members = transactions[i].members
            // A finding's last exchange is where the failure showed (the second token request, the callback…).
            if let first = errors.min(by: { ($0.exchanges.last ?? 0) < ($1.exchanges.last ?? 0) }),
                let leg = members.last(where: { first.exchanges.contains($0.exchange) })?.leg
            {
                transactions[i].outcome = "failed at \(leg.rawValue)"
            } else if members.contains(where: { m in
                factsByID[m.exchange].map { $0.tokenSucceeded || ($0.roles.contains(.userinfo) && $0.is2xx) } ?? false
            }) {
                transactions[i].outcome = "ok"
            } else {
                transactions[i].outcome = "incomplete"
            }
        }
        return Analysis(transactions: transactions, findings: findings)
    }
}
