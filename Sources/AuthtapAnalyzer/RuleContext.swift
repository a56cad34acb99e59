import AuthtapModel
import Foundation

/// What every rule reads about one session: the exchanges' facts, indexes over them built once, the options,
/// and where findings go. Rules evaluate in registry order over one shared context.
package struct RuleContext {
    let facts: [ExchangeFacts]
    let membership: [Int64: Int]
    let options: Analyzer.Options
    /// Where the authtap CA lives, for the trust instructions in fix texts.
    let caPath: String
    var findings: [Finding] = []
    /// The exchange each finding (by index in `findings`) is about: where the failure showed.
    var subjectOf: [Int: Int64] = [:]
    var handshakes: [HandshakeRecord] = []
    var proxyPort: Int?
    /// Handshake records already attached to an exchange's finding.
    var usedHandshakes = Set<Int>()

    // Indexes, built once: everything the rules do is linear in the number of exchanges.
    let byID: [Int64: ExchangeFacts]
    /// Code fingerprint → the exchanges that issued it (authorization response, callback).
    let codeIssued: [String: [ExchangeFacts]]
    /// Code fingerprint → token requests that sent it.
    let codeRedeemed: [String: [ExchangeFacts]]
    /// Transaction → its authorization request (the last one before the token request wins).
    let authorizeByTransaction: [Int: [ExchangeFacts]]
    let discoveredIssuers: Set<String>
    let jwksKids: Set<String>?
    let authorizeStates: Set<String>
    /// Token fingerprint → the capture-time signature verdict and the exchange that carries it.
    let signatureVerdicts: [String: (verdict: String, at: ExchangeFacts)]
    /// Token request id → the latest earlier successful token request of the same client_id.
    let lastSuccessBefore: [Int64: ExchangeFacts]
    /// State → the ids of the exchanges that answered it (authorization responses and callbacks), in order.
    let answersByState: [String: [Int64]]
    /// State → the authorization requests that sent it, in id order.
    let authorizeByState: [String: [ExchangeFacts]]
    /// "host client_id" → that client's authorization requests, in id order.
    let authorizeByClient: [String: [ExchangeFacts]]
    /// State → the last exchange whose redirect (Location) sent the browser to authorize with it.
    let startByState: [String: ExchangeFacts]

    init(facts: [ExchangeFacts], membership: [Int64: Int], options: Analyzer.Options, caPath: String) {
        self.facts = facts
        self.membership = membership
        self.options = options
        self.caPath = caPath
        var byID: [Int64: ExchangeFacts] = [:]
        var issued: [String: [ExchangeFacts]] = [:]
        var redeemed: [String: [ExchangeFacts]] = [:]
        var authorize: [Int: [ExchangeFacts]] = [:]
        var issuers = Set<String>()
        var kids: Set<String>? = nil
        var states = Set<String>()
        var verdicts: [String: (verdict: String, at: ExchangeFacts)] = [:]
        var byClient: [String: [ExchangeFacts]] = [:]
        var starts: [String: ExchangeFacts] = [:]
        for f in facts {
            if f.roles.contains(.authorizationRequest) {
                byClient["\(f.ex.host) \(f.value("client_id", .request) ?? "")", default: []].append(f)
            }
            if let location = f.ex.responseHeaders.value(of: "location"), let s = Self.stateParameter(location) {
                starts[s] = f
            }
            byID[f.id] = f
            for p in f.ex.oauthParams where p.name == "jwt_signature" && p.location == .derived {
                if let fp = p.fingerprint { verdicts[fp] = (p.value, f) }
            }
            if f.roles.contains(.authorizationResponse), let fp = f.fingerprint("code", .responseLocation) {
                issued[fp, default: []].append(f)
            } else if f.roles.contains(.callback), let fp = f.fingerprint("code", .request) {
                issued[fp, default: []].append(f)
            }
            if f.roles.contains(.token), f.isCodeGrant, let fp = f.fingerprint("code", .request) {
                redeemed[fp, default: []].append(f)
            }
            if f.roles.contains(.authorizationRequest) {
                if let t = membership[f.id] { authorize[t, default: []].append(f) }
                if let s = f.value("state", .request) { states.insert(s) }
            }
            if f.roles.contains(.discovery), case .success(let v)? = f.json, let iss = v["issuer"]?.string {
                issuers.insert(iss)
            }
            if f.roles.contains(.jwks), case .success(let v)? = f.json, case .array(let keys)? = v["keys"] {
                var set = kids ?? []
                for k in keys { if let kid = k["kid"]?.string { set.insert(kid) } }
                kids = set
            }
        }
        self.byID = byID
        self.codeIssued = issued
        self.codeRedeemed = redeemed
        self.authorizeByTransaction = authorize
        self.discoveredIssuers = issuers
        self.jwksKids = kids
        self.authorizeStates = states
        self.signatureVerdicts = verdicts
        self.tokenRequests = facts.filter { $0.roles.contains(.token) && $0.method != "GET" }
        var success: [String: ExchangeFacts] = [:]
        var before: [Int64: ExchangeFacts] = [:]
        for f in tokenRequests {
            guard let id = f.clientID else { continue }
            if let s = success[id] { before[f.id] = s }
            if f.tokenSucceeded { success[id] = f }
        }
        self.lastSuccessBefore = before
        var answers: [String: [Int64]] = [:]
        for f in facts {
            if f.roles.contains(.authorizationResponse), let s = f.value("state", .responseLocation) {
                answers[s, default: []].append(f.id)
            } else if f.roles.contains(.callback), let s = f.value("state", .request) {
                answers[s, default: []].append(f.id)
            }
        }
        self.answersByState = answers
        self.authorizeByState = Dictionary(
            grouping: facts.filter { $0.roles.contains(.authorizationRequest) && $0.value("state", .request) != nil },
            by: { $0.value("state", .request) ?? "" })
        self.authorizeByClient = byClient
        self.startByState = starts
    }

    /// The raw `state` parameter of a URL's query, as it appears there.
    static func stateParameter(_ url: String) -> String? {
        guard let q = url.firstIndex(of: "?") else { return nil }
        for pair in url[url.index(after: q)...].split(whereSeparator: { $0 == "&" || $0 == "#" }) {
            if pair.hasPrefix("state=") { return String(pair.dropFirst(6)) }
        }
        return nil
    }

    // MARK: helpers

    func transaction(of f: ExchangeFacts) -> Int? { membership[f.id] }

    /// Records a finding about `f` (and the exchanges in `more` that prove it); the server's own error at `f`
    /// joins the evidence.
    mutating func add(
        _ rule: RuleID, _ severity: Severity, _ title: String, _ f: ExchangeFacts,
        more: [ExchangeFacts] = [], explanation: String, fix: String, evidence: [String: String] = [:],
        candidates: [Finding.Candidate]? = nil
    ) {
        let ids = Array(Set(([f] + more).map(\.id))).sorted()
        var evidence = evidence
        if let report = f.error, evidence["server_error"] == nil, !more.contains(where: { $0.id == f.id }) {
            evidence["server_error"] = report.summary
            if let source = f.errorSource { evidence["dialect"] = "\(source.provider) (\(source.source))" }
        }
        var tx = transaction(of: f)
        if tx == nil { tx = more.compactMap { membership[$0.id] }.first }
        subjectOf[findings.count] = f.id
        findings.append(
            Finding(
                rule: rule, severity: severity, title: title, explanation: explanation, fix: fix,
                exchanges: ids, transaction: tx, evidence: evidence))
        findings[findings.count - 1].candidates = candidates
    }

    /// The authorization request of the transaction a token request belongs to.
    func authorizeFor(_ f: ExchangeFacts) -> ExchangeFacts? {
        if let code = f.fingerprint("code", .request), let issuer = codeIssued[code]?.first,
            let auth = issuer.roles.contains(.authorizationRequest) ? issuer : nil
        {
            return auth
        }
        guard let t = transaction(of: f) else { return nil }
        return authorizeByTransaction[t]?.last { $0.id < f.id }
    }

    /// Token requests that the token-endpoint rules look at: a GET to /token is only reported as malformed.
    let tokenRequests: [ExchangeFacts]

    /// Whether the code this token request sent went to the token endpoint more than once in the session.
    func codeSentMoreThanOnce(_ f: ExchangeFacts) -> Bool {
        f.fingerprint("code", .request).map { (codeRedeemed[$0]?.count ?? 0) > 1 } ?? false
    }

    /// For a code grant the server refused as expired, invalid or invalid_grant (and not explained by reuse):
    /// the exchange that issued the code, the time since, and whether expiry explains the refusal.
    func codeRefusal(_ f: ExchangeFacts) -> (issuedAt: ExchangeFacts?, gap: TimeInterval?, expired: Bool)? {
        guard let cls = f.errorClass, f.error != nil, [.codeExpired, .codeInvalid, .invalidGrant].contains(cls),
            f.isCodeGrant, !codeSentMoreThanOnce(f)
        else { return nil }
        let issuedAt = f.fingerprint("code", .request).flatMap { codeIssued[$0]?.first }
        let gap = issuedAt.map { f.start.timeIntervalSince($0.start) }
        return (issuedAt, gap, cls == .codeExpired || (gap ?? 0) >= options.codeLifetime)
    }

    static func seconds(_ t: TimeInterval) -> String {
        t < 10
            ? String(format: "%.2f s", t)
            : t < 120 ? String(format: "%.0f s", t) : String(format: "%.1f min", t / 60)
    }
}
