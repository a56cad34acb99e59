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
    public func analyze(_ exchanges: [Exchange], handshakes: [HandshakeRecord] = [], proxyPort: Int? = nil) -> Analysis {
        let facts = exchanges.sorted { ($0.id ?? 0) < ($1.id ?? 0) }.map(ExchangeFacts.init)
        var (transactions, membership) = TransactionBuilder.build(facts)
        var run = RuleRun(facts: facts, membership: membership, options: options, caPath: caPath)
        run.handshakes = handshakes
        run.proxyPort = proxyPort
        run.all()
        var findings = run.findings
        // De-duplicate (a fact seen from two sides gives one finding), then order by first exchange.
        var seen = Set<String>()
        findings = findings.filter { seen.insert($0.key).inserted }
        findings.sort { ($0.exchanges.first ?? 0, $0.rule) < ($1.exchanges.first ?? 0, $1.rule) }
        // Outcomes.
        let factsByID = Dictionary(facts.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let errorsByTransaction = Dictionary(grouping: findings.filter { $0.severity == .error && $0.transaction != nil },
                                             by: { $0.transaction ?? 0 })
        for i in transactions.indices {
            let index = transactions[i].index
            let errors = errorsByTransaction[index] ?? []
            let members = transactions[i].members
            // A finding's last exchange is where the failure showed (the second token request, the callback…).
            if let first = errors.min(by: { ($0.exchanges.last ?? 0) < ($1.exchanges.last ?? 0) }),
               let leg = members.last(where: { first.exchanges.contains($0.exchange) })?.leg {
                transactions[i].outcome = "failed at \(leg.rawValue)"
            } else if members.contains(where: { m in factsByID[m.exchange].map { $0.tokenSucceeded || ($0.roles.contains(.userinfo) && $0.is2xx) } ?? false }) {
                transactions[i].outcome = "ok"
            } else {
                transactions[i].outcome = "incomplete"
            }
        }
        return Analysis(transactions: transactions, findings: findings)
    }
}

/// One pass of every rule over a session's facts.
struct RuleRun {
    let facts: [ExchangeFacts]
    let membership: [Int64: Int]
    let options: Analyzer.Options
    let caPath: String
    var findings: [Finding] = []
    var handshakes: [HandshakeRecord] = []
    var proxyPort: Int?
    /// Handshake records already attached to an exchange's finding.
    var usedHandshakes = Set<Int>()

    // Indexes, built once: everything below is linear in the number of exchanges.
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
        for f in facts {
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
            if f.roles.contains(.discovery), case .success(let v)? = f.json, let iss = v["issuer"]?.string { issuers.insert(iss) }
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
    }

    mutating func all() {
        codeReuse()
        for f in facts {
            tlsAndUpstream(f)
            if f.roles.contains(.token), f.method == "GET" {
                add("invalid-request", .error, "GET sent to the token endpoint", f,
                    explanation: "The token request at \(f.ex.host)\(f.path) used GET with its parameters in the query. RFC 6749 §3.2 requires POST, and parameters in a URL leak into logs and browser history.",
                    fix: "Send the token request as POST with an application/x-www-form-urlencoded body.",
                    evidence: ["method": "GET", "grant_type": f.grantType ?? ""])
            } else if f.roles.contains(.token) {
                tokenRequestShape(f)
                tokenErrors(f)
                pkce(f)
                redirectURI(f)
                clientAuth(f)
                scope(f)
                jwts(f)
            }
            nonJSON(f)
            if f.roles.contains(.callback) || f.roles.contains(.authorizationResponse) { frontChannel(f) }
            if f.roles.contains(.authorizationRequest) { authorizeRequest(f) }
        }
        refreshChains()
        missingLegs()
        unmatchedHandshakes()
    }

    // MARK: packet-level evidence (pcap mode)

    /// The failed handshake record that matches an exchange's TLS failure: same server port (the proxy's
    /// for the client leg), same SNI when known, and close in time.
    mutating func handshakeEvidence(for f: ExchangeFacts, clientLeg: Bool) -> [String: String] {
        guard !handshakes.isEmpty else { return [:] }
        let port = clientLeg ? proxyPort : f.ex.port
        let at = Int64(saturating: f.start.timeIntervalSince1970 * 1e6)
        var best: (Int, Int64)? = nil
        for (i, h) in handshakes.enumerated() where !usedHandshakes.contains(i) && h.outcome != .completed {
            guard port == nil || h.serverPort == port, h.sni == nil || h.sni == f.ex.host else { continue }
            let distance = abs(h.startMicros - at)
            guard distance < 5_000_000 else { continue }
            if distance < best?.1 ?? .max { best = (i, distance) }
        }
        guard let (i, _) = best else { return [:] }
        usedHandshakes.insert(i)
        let h = handshakes[i]
        return ["packets": "\(h.firstPacket)-\(h.lastPacket)", "handshake": h.outcome.rawValue + (h.side.map { " by \($0)" } ?? "") + (h.alert.map { " (\($0))" } ?? ""),
                "handshake_detail": h.detail]
    }

    mutating func unmatchedHandshakes() {
        for (i, h) in handshakes.enumerated() where !usedHandshakes.contains(i) && h.outcome != .completed {
            if h.outcome == .closedDuringHandshake && h.sni == nil && h.versionsOffered.isEmpty { continue } // TCP only: a port probe
            let server = "\(h.server.contains(":") ? "[\(h.server)]" : h.server):\(h.serverPort)"
            let client = "\(h.client):\(h.clientPort)"
            let name = h.sni.map { " (\($0))" } ?? ""
            let toProxy = proxyPort != nil && h.serverPort == proxyPort
            var title: String
            var explanation: String
            var fix: String
            switch h.outcome {
            case .refused:
                title = "Connection to \(server) refused"
                explanation = "The SYN from \(client) was answered with a RST: nothing listens on \(server), or a firewall rejects it."
                fix = "Check that the server runs on that port and the host/port in the URL."
            case .synUnanswered:
                title = "No answer to the connection attempt to \(server)"
                explanation = "\(client) sent SYNs to \(server) that got no answer: \(h.detail). A firewall drops the packets, or the address is wrong."
                fix = "Check routes and firewalls towards \(server) (and that the app resolves the right address)."
            case .noServerHello, .clientHelloRetransmitted:
                title = "ClientHello to \(server)\(name) never answered"
                explanation = "TCP connected, the client sent its ClientHello, and the server never answered: \(h.detail)."
                fix = "Look for a middlebox that filters TLS by SNI or drops large ClientHellos (post-quantum key shares make them larger than one MTU), or a server that is not TLS on that port."
            case .versionMismatch:
                title = "No TLS version in common with \(server)\(name)"
                explanation = "\(h.detail). Offered: \(h.versionsOffered.joined(separator: ", "))."
                fix = "Enable TLS 1.2/1.3 on both sides."
            case .alert where toProxy && h.side == "client":
                title = "The client at \(client) rejected authtap's certificate"
                explanation = "During the handshake with authtap\(name), the client sent \(h.alert == "encrypted" ? "an encrypted alert" : "the alert \(h.alert ?? "")") after our certificate and closed: it does not trust the authtap CA. No exchange was recorded for it."
                fix = "Trust the authtap CA in the client: eval \"$(authtap env)\" (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, NODE_EXTRA_CA_CERTS); for Java, keytool -importcert -alias authtap -file \(caPath) -cacerts."
            case .alert:
                title = "\(h.side == "client" ? "The client" : "The server") sent \(h.alert ?? "an alert") during the handshake with \(server)\(name)"
                explanation = h.detail + "."
                fix = h.side == "client" ? "The client refused the server's certificate or parameters: check its trust store and the certificate's names." : "The server refused the client's parameters: check versions, ciphers, SNI and client certificates."
            case .resetDuringHandshake, .closedDuringHandshake:
                let closedByClient = h.side == "client"
                if toProxy && closedByClient {
                    title = "The client at \(client) gave up during the handshake with authtap"
                    explanation = "\(h.detail). A client that closes right after authtap's certificate usually does not trust the authtap CA."
                    fix = "Trust the authtap CA in the client (eval \"$(authtap env)\"), or exclude pinned hosts with --intercept."
                } else {
                    title = "Connection \(h.outcome == .resetDuringHandshake ? "reset" : "closed") during the handshake with \(server)\(name)"
                    explanation = h.detail + "."
                    fix = "A middlebox or the server dropped the handshake: compare with a direct connection (openssl s_client -connect \(server) -servername \(h.sni ?? h.server))."
                }
            case .completed:
                continue
            }
            findings.append(Finding(
                rule: "tls-fault", severity: .error, title: title, explanation: explanation + " (packets \(h.firstPacket)-\(h.lastPacket) of the capture)", fix: fix,
                exchanges: [], transaction: nil,
                evidence: ["packets": "\(h.firstPacket)-\(h.lastPacket)", "client": client, "server": server, "outcome": h.outcome.rawValue,
                           "sni": h.sni ?? "(none)", "alert": h.alert ?? "(none)"]))
        }
    }

    // MARK: helpers

    func transaction(of f: ExchangeFacts) -> Int? { membership[f.id] }

    mutating func add(_ rule: RuleID, _ severity: Severity, _ title: String, _ f: ExchangeFacts, more: [ExchangeFacts] = [],
                      explanation: String, fix: String, evidence: [String: String] = [:]) {
        let ids = Array(Set(([f] + more).map(\.id))).sorted()
        var evidence = evidence
        if let report = f.error, evidence["server_error"] == nil, !more.contains(where: { $0.id == f.id }) {
            evidence["server_error"] = report.summary
            if let source = f.errorSource { evidence["dialect"] = "\(source.provider) (\(source.source))" }
        }
        var tx = transaction(of: f)
        if tx == nil { tx = more.compactMap { membership[$0.id] }.first }
        findings.append(Finding(rule: rule, severity: severity, title: title, explanation: explanation, fix: fix,
                                exchanges: ids, transaction: tx, evidence: evidence))
    }

    /// The authorization request of the transaction a token request belongs to.
    func authorizeFor(_ f: ExchangeFacts) -> ExchangeFacts? {
        if let code = f.fingerprint("code", .request), let issuer = codeIssued[code]?.first,
           let auth = issuer.roles.contains(.authorizationRequest) ? issuer : nil {
            return auth
        }
        guard let t = transaction(of: f) else { return nil }
        return authorizeByTransaction[t]?.last { $0.id < f.id }
    }

    static func seconds(_ t: TimeInterval) -> String {
        t < 10 ? String(format: "%.2f s", t) : t < 120 ? String(format: "%.0f s", t) : String(format: "%.1f min", t / 60)
    }

    // MARK: code-reuse, code-expired, invalid-grant

    mutating func codeReuse() {
        for (fp, attempts) in codeRedeemed where attempts.count > 1 {
            let sorted = attempts.sorted { $0.id < $1.id }
            let winner = sorted.first { $0.tokenSucceeded }
            let gap = sorted[1].start.timeIntervalSince(sorted[0].start)
            let simultaneous = gap < options.duplicateWindow
            var evidence = ["code": sorted[0].value("code", .request) ?? fp, "code_fingerprint": fp,
                            "attempts": sorted.map { "#\($0.id) \($0.status.map(String.init) ?? "no response")\($0.error.map { " " + $0.code } ?? "")" }.joined(separator: ", "),
                            "gap": Self.seconds(gap)]
            evidence["succeeded"] = winner.map { "#\($0.id)" } ?? "none"
            let first = sorted[0]
            add("code-reuse", .error, simultaneous ? "Authorization code exchanged twice at once (double render / double submit)" : "Authorization code sent to the token endpoint \(sorted.count) times",
                first, more: Array(sorted.dropFirst()),
                explanation: "The same authorization code (fingerprint \(fp)) was sent to \(first.ex.host)\(first.path) \(sorted.count) times"
                    + (winner.map { "; attempt #\($0.id) succeeded" } ?? "; none succeeded")
                    + ". A code is single-use (RFC 6749 §4.1.2): every later attempt fails with invalid_grant, and a careful server also revokes the tokens issued for it."
                    + (simultaneous ? " The attempts were \(Self.seconds(gap)) apart: two copies of the same code path ran at once, the signature of React StrictMode running effects twice, a component re-rendering, or a double-submitted callback." : " The attempts were \(Self.seconds(gap)) apart: the callback was replayed (back button, reload, a retry loop)."),
                fix: simultaneous
                    ? "Guard the code exchange so it runs once per code: keep a module-level flag or a ref keyed by the code (not component state), or move the exchange out of a React effect into the route loader / server callback. In development, StrictMode double-invokes effects on purpose."
                    : "Exchange each code exactly once and drop it from the URL right after (history.replaceState); on reload, start a new authorization instead of reusing the old callback URL. Do not retry a token request that reached the server.",
                evidence: evidence)
        }
    }

    mutating func tokenErrors(_ f: ExchangeFacts) {
        guard let cls = f.errorClass, let report = f.error else { return }
        let codeFP = f.fingerprint("code", .request)
        let reused = codeFP.map { (codeRedeemed[$0]?.count ?? 0) > 1 } ?? false
        switch cls {
        case .codeReused where !reused:
            add("code-reuse", .error, "The server says this authorization code was already used", f,
                explanation: "\(f.ex.host) rejected the token request because its code was already redeemed (\(report.summary)). The first redemption was not captured: it went through another path, or happened before authtap started.",
                fix: "Exchange each code once. Look for a second caller (a server-side callback and a client-side one both exchanging, a retry, a double render) and remove it.",
                evidence: ["code_fingerprint": codeFP ?? "none"])
        case .invalidGrant where !f.isCodeGrant && !f.isRefresh:
            genericInvalidGrant(f, report)
        case .codeExpired, .codeInvalid, .invalidGrant:
            guard f.isCodeGrant, !reused else { return }
            let issuedAt = codeFP.flatMap { codeIssued[$0]?.first }
            let gap = issuedAt.map { f.start.timeIntervalSince($0.start) }
            if cls == .codeExpired || (gap ?? 0) >= options.codeLifetime {
                var evidence: [String: String] = ["code_fingerprint": codeFP ?? "none"]
                if let gap { evidence["gap"] = Self.seconds(gap) }
                add("code-expired", .error, "Authorization code expired before it was exchanged", f, more: issuedAt.map { [$0] } ?? [],
                    explanation: "The token request failed with \(report.summary)"
                        + (gap.map { " \(Self.seconds($0)) after the code was issued (exchange #\(issuedAt.map { "\($0.id)" } ?? "?"))." } ?? ".")
                        + " Authorization codes live briefly, typically 30 s to 10 minutes (RFC 6749 §4.1.2 recommends at most 10)."
                        + (gap.map { $0 >= options.codeLifetime ? " A gap this long usually means the user sat on the callback page, a debugger paused the backend, or a queue delayed the exchange." : "" } ?? ""),
                    fix: "Exchange the code as soon as the callback arrives, in the same request handler. If something legitimately waits (a debugger, a slow queue), start a fresh authorization afterwards instead of replaying the old code.",
                    evidence: evidence)
            } else if cls != .codeExpired, !hasSpecificCause(f) {
                genericInvalidGrant(f, report)
            }
        case .invalidClient:
            break // clientAuth reports it with the credentials used.
        case .unsupportedGrantType:
            add("unsupported-grant-type", .error, "Grant type \(f.grantType ?? "(none)") not supported by \(f.ex.host)", f,
                explanation: "The token endpoint answered \(report.summary) to grant_type=\(f.grantType ?? "(missing)"). Either the server does not implement this grant, or this client is not allowed to use it.",
                fix: "Enable the grant type for this client in the authorization server (e.g. 'Authorization Code', 'Refresh Token', 'Client Credentials', 'Device Code'), and check the exact spelling: extension grants are URNs like urn:ietf:params:oauth:grant-type:device_code.",
                evidence: ["grant_type": f.grantType ?? "(missing)"])
        case .invalidScope:
            add("invalid-scope", .error, "Scope rejected by \(f.ex.host)", f,
                explanation: "The server answered \(report.summary). Requested scope: \(f.value("scope", .request) ?? "(none in this request)").",
                fix: "Request only scopes the server defines and this client is allowed; check the client's allowed scopes and any API permissions that need admin consent.",
                evidence: ["requested_scope": f.value("scope", .request) ?? "(none)"])
        case .invalidRequest:
            add("invalid-request", .error, "The server says the token request is malformed", f,
                explanation: "\(f.ex.host) answered \(report.summary). The request carried: \(f.ex.oauthParams.filter { $0.location.isRequest }.map(\.name).joined(separator: ", ")).",
                fix: "Compare the parameters with what the grant type requires (RFC 6749 §4), send them once each, form-encoded.",
                evidence: [:])
        default:
            break
        }
    }

    /// Whether a more specific rule already explains this invalid_grant.
    func hasSpecificCause(_ f: ExchangeFacts) -> Bool {
        if let cls = f.errorClass, [.pkceMismatch, .redirectURIMismatch, .codeReused, .codeExpired].contains(cls) { return true }
        if let auth = authorizeFor(f) {
            let challenge = auth.param("code_challenge", .request)
            let s256 = f.value("code_verifier_s256", .derived)
            // A plain challenge is masked (it is the verifier): compared by fingerprint.
            if let plain = challenge?.fingerprint {
                if plain != f.fingerprint("code_verifier", .request) { return true }
            } else if challenge != nil && s256 != challenge?.value { return true }
            if let a = auth.value("redirect_uri", .request), let t = f.value("redirect_uri", .request), a != t { return true }
        }
        return false
    }

    mutating func genericInvalidGrant(_ f: ExchangeFacts, _ report: ErrorReport) {
        add("invalid-grant", .error, "Grant rejected: \(report.code)", f,
            explanation: "\(f.ex.host) rejected the \(f.grantType ?? "token") grant with \(report.summary). The capture rules out reuse, expiry, a PKCE or redirect_uri difference that authtap could see; what is left is server-side state: a code issued to another client, a grant revoked by sign-out or password change, or a code from another environment (dev vs prod tenant).",
            fix: "Check that the code comes from this server and this client_id, that the user session was not ended in between, and read the server's audit log for the specific reason (e.g. 'Grant not found').",
            evidence: ["grant_type": f.grantType ?? "(none)"])
    }

    // MARK: state-mismatch and front channel

    mutating func authorizeRequest(_ f: ExchangeFacts) {
        // An error page (not a redirect) at /authorize: the server would not even send the user back.
        if let status = f.status, status >= 400 {
            let body = f.ex.responseBody.bytes
            var report: ErrorReport? = nil
            if case .success(let json) = JSONValue.parse(body) { report = ProviderErrors.report(json: json) }
            let text = (report.map { "\($0.code) \($0.description ?? "")" } ?? f.bodyText).lowercased()
            let title = f.htmlTitle
            let shown = report?.summary ?? title ?? "HTTP \(status)"
            let redirect = f.value("redirect_uri", .request) ?? "(none)"
            if text.has("redirect_uri") || text.has("redirect uri") || text.has("redirect url") || text.has("callback url") {
                add("redirect-uri-mismatch", .error, "The server rejected the redirect_uri at /authorize", f,
                    explanation: "\(f.ex.host) answered the authorization request with an error page (\(shown)) instead of redirecting: it does not accept redirect_uri=\(redirect) for client \(f.value("client_id", .request) ?? "?"). The user never gets back to the app.",
                    fix: "Register exactly \(redirect) for this client (scheme, host, port, path and trailing slash must match), or send the registered one.",
                    evidence: ["redirect_uri": redirect, "status": String(status), "server_says": shown])
            } else {
                add("authorization-error", .error, "The authorization request was rejected with HTTP \(status)", f,
                    explanation: "\(f.ex.host) answered the authorization request with an error page (\(shown)) instead of redirecting back to the client.",
                    fix: "Check client_id, response_type and scope against the client's registration; the error page names the parameter.",
                    evidence: ["status": String(status), "server_says": shown])
            }
        }
        let state = f.value("state", .request)
        let challenge = f.value("code_challenge", .request)
        if state == nil && challenge == nil, f.value("response_type", .request)?.has("code") ?? false {
            add("state-mismatch", .warning, "Authorization request without state or PKCE: no CSRF protection", f,
                explanation: "The authorization request to \(f.ex.host)\(f.path) carries neither state nor a PKCE code_challenge. Nothing ties the callback to this browser session, so an attacker can inject their own code (login CSRF, RFC 6749 §10.12).",
                fix: "Send an unguessable state bound to the user's session and check it on the callback, and use PKCE (S256) as OAuth 2.1 requires for every client.",
                evidence: ["client_id": f.value("client_id", .request) ?? "(none)"])
        }
        if challenge != nil, f.value("code_challenge_method", .request) == nil {
            add("pkce-mismatch", .warning, "code_challenge sent without code_challenge_method: the server assumes plain", f,
                explanation: "RFC 7636 §4.3: without code_challenge_method the server treats the challenge as plain, so a client that computed S256 will fail verification, and plain gives no protection if the challenge leaks.",
                fix: "Send code_challenge_method=S256 with the challenge.",
                evidence: ["code_challenge": challenge ?? ""])
        } else if f.value("code_challenge_method", .request) == "plain" {
            add("pkce-mismatch", .warning, "PKCE uses the plain method", f,
                explanation: "code_challenge_method=plain sends the verifier itself as the challenge; anyone who sees the authorization URL can redeem the code. Many servers reject plain outright.",
                fix: "Use S256: code_challenge = BASE64URL(SHA256(code_verifier)).",
                evidence: ["code_challenge_method": "plain"])
        }
    }

    mutating func frontChannel(_ f: ExchangeFacts) {
        // An error carried back to the client.
        if let report = f.error, f.errorClass != nil {
            if f.errorClass == .redirectURIMismatch {
                add("redirect-uri-mismatch", .error, "The server rejected the redirect_uri at /authorize", f,
                    explanation: "\(f.ex.host) answered the authorization request with \(report.summary). The redirect_uri sent must match one registered for the client exactly, character for character.",
                    fix: "Register \(authorizeFor(f)?.value("redirect_uri", .request) ?? "the redirect_uri") for this client, or send the one that is registered (watch scheme, host, port, trailing slash and case).",
                    evidence: ["redirect_uri": f.value("redirect_uri", .request) ?? "(not in this exchange)"])
            } else if f.roles.contains(.callback) || !f.roles.contains(.authorizationRequest) {
                add("authorization-error", f.errorClass == .accessDenied || f.errorClass == .interactionRequired ? .warning : .error,
                    "Authorization returned \(report.code)", f,
                    explanation: "The authorization server sent the user back with \(report.summary)." + (f.errorClass == .accessDenied ? " The user (or a policy) declined consent." : f.errorClass == .interactionRequired ? " A silent request (prompt=none) needs the user to sign in or consent." : ""),
                    fix: f.errorClass == .interactionRequired ? "Fall back to an interactive authorization request (without prompt=none) when the silent one fails." : "Handle the error on the callback: show it to the user and offer to start over; check requested scopes and the client's consent settings.",
                    evidence: ["error": report.code])
            }
        }
        // state-mismatch on the callback.
        guard f.roles.contains(.callback) else { return }
        let callbackState = f.value("state", .request)
        let code = f.fingerprint("code", .request)
        // The authorization request this callback answers: via the code's authorization response, or the transaction.
        let issuer = code.flatMap { codeIssued[$0]?.first { $0.roles.contains(.authorizationResponse) } }
        let auth = issuer.flatMap { i in i.roles.contains(.authorizationRequest) ? i : nil }
            ?? transaction(of: f).flatMap { authorizeByTransaction[$0]?.last { $0.id < f.id } }
        let sentState = auth?.value("state", .request)
        if let auth, let sentState {
            if callbackState == nil {
                add("state-mismatch", .error, "Callback arrived without the state sent to /authorize", f, more: [auth],
                    explanation: "The authorization request #\(auth.id) sent state=\(sentState), but the callback carries no state. The client cannot tell this callback from a forged one.",
                    fix: "Check that the redirect preserves the query (no rewrite or proxy dropping it) and that the client reads state from the right place (query vs fragment vs form_post body).",
                    evidence: ["sent_state": sentState, "callback_state": "(missing)"])
            } else if let callbackState, callbackState != sentState {
                add("state-mismatch", .error, "Callback state differs from the one sent to /authorize", f, more: [auth],
                    explanation: "The authorization request #\(auth.id) sent state=\(sentState); the callback #\(f.id) returned state=\(callbackState). Either two sign-ins overlapped (two tabs, a double click), the state was stored in a session that changed (cookie lost on a cross-site redirect: SameSite=Strict), or the callback was forged.",
                    fix: "Store state where the callback can read it (a cookie with SameSite=Lax and the right domain/path, or server session), generate it once per sign-in, and reject the callback on mismatch rather than continuing.",
                    evidence: ["sent_state": sentState, "callback_state": callbackState])
            }
        } else if let callbackState, auth == nil, !authorizeStates.isEmpty, !authorizeStates.contains(callbackState) {
            add("state-mismatch", .warning, "Callback state was never issued in this capture", f,
                explanation: "The callback carries state=\(callbackState), but none of the \(authorizeStates.count) authorization requests captured in this session sent it.",
                fix: "If the authorization request went through another path (a browser not using the proxy), import its HAR; otherwise the callback did not originate from this client and must be rejected.",
                evidence: ["callback_state": callbackState])
        }
    }

    // MARK: PKCE

    mutating func pkce(_ f: ExchangeFacts) {
        guard f.isCodeGrant else { return }
        let auth = authorizeFor(f)
        let challenge = auth?.value("code_challenge", .request)
        let method = auth?.value("code_challenge_method", .request) ?? (challenge == nil ? nil : "plain")
        let verifier = f.param("code_verifier", .request)
        let s256 = f.value("code_verifier_s256", .derived)
        let serverSaysPKCE = f.errorClass == .pkceMismatch
        var evidence: [String: String] = [:]
        if let challenge { evidence["code_challenge"] = challenge }
        if let method { evidence["code_challenge_method"] = method }
        if let verifier { evidence["code_verifier"] = verifier.value }
        if let s256 { evidence["S256(code_verifier)"] = s256 }
        let more = auth.map { [$0] } ?? []
        let authID = auth.map { "\($0.id)" } ?? "?"
        if let verifier, let length = Int(verifier.value.split(separator: "len=").last?.prefix { $0.isNumber } ?? ""), !(43...128).contains(length) {
            add("pkce-mismatch", .error, "code_verifier has an invalid length (\(length))", f, more: more,
                explanation: "RFC 7636 §4.1 requires a code_verifier of 43 to 128 characters; this one has \(length). Servers reject it, or worse, accept it only sometimes.",
                fix: "Generate 32 random bytes and base64url-encode them without padding (43 characters).",
                evidence: evidence)
        }
        if f.value("code_verifier_charset", .derived) == "invalid" {
            add("pkce-mismatch", .error, "code_verifier has characters outside [A-Za-z0-9-._~]", f, more: more,
                explanation: "RFC 7636 §4.1 allows only unreserved characters in code_verifier; '+', '/', '=' (standard base64) are the usual culprits.",
                fix: "Use base64url without padding for the verifier.",
                evidence: evidence)
        }
        if let challenge, method == "S256", let s256, s256 != challenge {
            add("pkce-mismatch", .error, "S256(code_verifier) does not match the code_challenge", f, more: more,
                explanation: "The authorization request #\(authID) sent code_challenge=\(challenge); SHA-256 of the code_verifier sent to /token is \(s256). The verifier is not the one the challenge was made from: it was regenerated (a new PKCE pair per render or per page load), read from the wrong storage, or belongs to another sign-in tab.",
                fix: "Generate the verifier once per authorization, store it with the state (sessionStorage or server session), and send that same verifier to /token; derive the challenge as BASE64URL(SHA256(verifier)) with no padding.",
                evidence: evidence)
        } else if method == "plain", let plain = auth?.fingerprint("code_challenge", .request), let verifier,
                  let verifierPrint = verifier.fingerprint, plain != verifierPrint {
            add("pkce-mismatch", .error, "code_verifier is not the plain code_challenge", f, more: more,
                explanation: "The authorization request #\(authID) sent a plain code_challenge (fingerprint \(plain)); "
                    + "the code_verifier sent to /token has fingerprint \(verifierPrint). With method plain the two "
                    + "must be the same string.",
                fix: "Send the same verifier the challenge was made from, generated once per authorization; "
                    + "better, switch to code_challenge_method=S256.",
                evidence: evidence)
        } else if challenge != nil, verifier == nil {
            add("pkce-mismatch", .error, "code_challenge was sent but the token request has no code_verifier", f, more: more,
                explanation: "The authorization request #\(authID) used PKCE, so the server will only redeem the code with the matching code_verifier, and this token request sent none.",
                fix: "Send code_verifier with the token request (the value the challenge was derived from).",
                evidence: evidence)
        } else if auth != nil, challenge == nil, verifier != nil {
            add("pkce-mismatch", f.is2xx ? .warning : .error, "code_verifier sent without any code_challenge at /authorize", f, more: more,
                explanation: "The token request sends a code_verifier, but the authorization request #\(authID) had no code_challenge. Strict servers reject this; others ignore the verifier, so PKCE protects nothing.",
                fix: "Send code_challenge and code_challenge_method=S256 in the authorization request.",
                evidence: evidence)
        } else if serverSaysPKCE {
            add("pkce-mismatch", .error, "The server rejected the PKCE verification", f, more: more,
                explanation: "\(f.ex.host) answered \(f.error?.summary ?? "an error")." + (auth == nil ? " The authorization request was not captured, so authtap cannot compare the challenge itself." : ""),
                fix: "Make sure the verifier sent to /token is the one whose S256 hash was sent as code_challenge, generated once per authorization.",
                evidence: evidence)
        }
    }

    // MARK: redirect_uri

    mutating func redirectURI(_ f: ExchangeFacts) {
        guard f.isCodeGrant else { return }
        let auth = authorizeFor(f)
        let sent = auth?.value("redirect_uri", .request)
        let token = f.value("redirect_uri", .request)
        let serverSays = f.errorClass == .redirectURIMismatch
        let authID = auth.map { "\($0.id)" } ?? "?"
        if let sent, let token, sent != token {
            let how = Self.describeDifference(sent, token)
            // A difference the server accepted (e.g. case in the query) is not a failure.
            if f.tokenSucceeded { return }
            add("redirect-uri-mismatch", .error, "redirect_uri differs between /authorize and /token: \(how)", f, more: auth.map { [$0] } ?? [],
                explanation: "RFC 6749 §4.1.3: the redirect_uri sent to /token must be identical to the one sent to /authorize (#\(authID)). They differ in \(how).",
                fix: "Use one constant for the redirect_uri in both requests (build it from configuration, not from the incoming request's Host header, which a proxy or load balancer may change).",
                evidence: ["authorize_redirect_uri": sent, "token_redirect_uri": token, "difference": how])
        } else if let sent, token == nil, !f.tokenSucceeded {
            add("redirect-uri-mismatch", .error, "redirect_uri missing from the token request", f, more: auth.map { [$0] } ?? [],
                explanation: "The authorization request sent redirect_uri=\(sent), so RFC 6749 §4.1.3 requires the same value in the token request, which has none.",
                fix: "Add redirect_uri=\(sent) to the token request.",
                evidence: ["authorize_redirect_uri": sent])
        } else if serverSays {
            add("redirect-uri-mismatch", .error, "The server rejected the redirect_uri", f,
                explanation: "\(f.ex.host) answered \(f.error?.summary ?? "an error")." + (auth == nil ? " The authorization request was not captured; compare the token request's redirect_uri (\(token ?? "none")) with the one registered and the one used at /authorize." : ""),
                fix: "Send exactly the registered redirect_uri in both requests.",
                evidence: ["token_redirect_uri": token ?? "(none)"])
        }
    }

    /// Which parts of two URLs differ, in words.
    static func describeDifference(_ a: String, _ b: String) -> String {
        guard let ua = URLComponents(string: a), let ub = URLComponents(string: b) else { return "their text" }
        var parts: [String] = []
        if ua.scheme?.lowercased() != ub.scheme?.lowercased() { parts.append("scheme (\(ua.scheme ?? "none") vs \(ub.scheme ?? "none"))") }
        if ua.host != ub.host {
            parts.append(ua.host?.lowercased() == ub.host?.lowercased() ? "host case (\(ua.host ?? "") vs \(ub.host ?? ""))" : "host (\(ua.host ?? "none") vs \(ub.host ?? "none"))")
        }
        if ua.port != ub.port { parts.append("port (\(ua.port.map(String.init) ?? "default") vs \(ub.port.map(String.init) ?? "default"))") }
        if ua.path != ub.path {
            if ua.path + "/" == ub.path || ub.path + "/" == ua.path {
                parts.append("a trailing slash (\(ua.path) vs \(ub.path))")
            } else if ua.path.lowercased() == ub.path.lowercased() {
                parts.append("path case (\(ua.path) vs \(ub.path))")
            } else {
                parts.append("path (\(ua.path) vs \(ub.path))")
            }
        }
        if ua.percentEncodedQuery != ub.percentEncodedQuery {
            parts.append("query (\(ua.percentEncodedQuery ?? "none") vs \(ub.percentEncodedQuery ?? "none"))")
        }
        if ua.fragment != ub.fragment { parts.append("fragment") }
        return parts.isEmpty ? "encoding only" : parts.joined(separator: ", ")
    }

    // MARK: client authentication

    mutating func clientAuth(_ f: ExchangeFacts) {
        let basic = f.param("client_id", .requestHeaderAuthorization) != nil
        let bodySecret = f.param("client_secret", .requestBody) != nil
        let assertion = f.param("client_assertion", .requestBody) != nil
        let method = basic ? "client_secret_basic" : bodySecret ? "client_secret_post" : assertion ? "private_key_jwt / client_secret_jwt" : "none (public client)"
        if basic && (bodySecret || assertion) {
            add("invalid-client", f.is2xx ? .warning : .error, "Client credentials sent both in the Basic header and in the body", f,
                explanation: "RFC 6749 §2.3: a client must not use more than one authentication method in a request. This one sends HTTP Basic credentials and \(bodySecret ? "client_secret" : "client_assertion") in the body; servers may reject it with invalid_request or invalid_client, or pick either.",
                fix: "Send the credentials once: either the Authorization: Basic header (client_secret_basic) or the body (client_secret_post), whichever the client is registered for.",
                evidence: ["method": "client_secret_basic + body"])
        }
        if f.errorClass == .invalidClient || f.status == 401 {
            let hasPKCE = f.param("code_verifier", .request) != nil
            var explanation = "\(f.ex.host) rejected the client's authentication (\(f.error?.summary ?? "HTTP \(f.status ?? 0)")). The client authenticated with \(method)."
            if hasPKCE && (basic || bodySecret) {
                explanation += " It also uses PKCE: if the client is registered as public (SPA, mobile, CLI), it has no secret and must not send one."
            }
            if !basic && !bodySecret && !assertion {
                explanation += " No credentials were sent: a confidential client must authenticate at the token endpoint."
            }
            add("invalid-client", .error, "Client authentication failed", f,
                explanation: explanation,
                fix: "Check client_id and the secret for this environment (a rotated or expired secret, a secret from another tenant), and the authentication method the client is registered with (client_secret_basic vs client_secret_post vs none). In Basic, the id and secret must each be form-urlencoded before base64 (RFC 6749 §2.3.1).",
                evidence: ["method": method, "client_id": f.clientID ?? "(none)"])
        }
        if let auth = authorizeFor(f), let a = auth.value("client_id", .request), let t = f.clientID, a != t {
            add("invalid-client", .error, "client_id differs between /authorize and /token", f, more: [auth],
                explanation: "The authorization request #\(auth.id) used client_id=\(a), the token request uses client_id=\(t). A code is bound to the client it was issued to.",
                fix: "Use one client registration for both legs (check environment variables for dev vs prod IDs).",
                evidence: ["authorize_client_id": a, "token_client_id": t])
        }
    }

    // MARK: token request shape (invalid-request)

    mutating func tokenRequestShape(_ f: ExchangeFacts) {
        let contentType = (f.ex.requestHeaders.value(of: "content-type") ?? "").lowercased()
        if !contentType.has("application/x-www-form-urlencoded") {
            add("invalid-request", f.is2xx && f.error == nil ? .warning : .error, "Token request body is \(contentType.isEmpty ? "untyped" : contentType), not form-encoded", f,
                explanation: "RFC 6749 §4.1.3 and §3.2: token requests are application/x-www-form-urlencoded. This one was sent as \(contentType.isEmpty ? "a body without Content-Type" : contentType); most servers ignore such a body and then report missing parameters.",
                fix: "Encode the parameters as a form: in fetch, body: new URLSearchParams({...}); in axios, pass a URLSearchParams (not an object); in requests, data= (not json=).",
                evidence: ["content_type": contentType.isEmpty ? "(none)" : contentType])
        }
        let required: [String: [String]] = [
            "authorization_code": ["code"], "refresh_token": ["refresh_token"], "password": ["username", "password"],
            "urn:ietf:params:oauth:grant-type:device_code": ["device_code"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer": ["assertion"],
            "urn:ietf:params:oauth:grant-type:token-exchange": ["subject_token", "subject_token_type"],
        ]
        if let grant = f.grantType, let names = required[grant] {
            let missing = names.filter { f.param($0, .request) == nil }
            if !missing.isEmpty {
                add("invalid-request", .error, "Token request for \(grant) is missing \(missing.joined(separator: ", "))", f,
                    explanation: "grant_type=\(grant) requires \(names.joined(separator: ", ")); this request lacks \(missing.joined(separator: ", ")).",
                    fix: "Add \(missing.joined(separator: ", ")) to the token request body.",
                    evidence: ["grant_type": grant, "missing": missing.joined(separator: ", ")])
            }
        }
    }

    // MARK: scope

    mutating func scope(_ f: ExchangeFacts) {
        guard f.tokenSucceeded, case .success(let v)? = f.json, let granted = v["scope"]?.string else { return }
        let requested = f.value("scope", .request) ?? authorizeFor(f)?.value("scope", .request)
        guard let requested else { return }
        let want = Set(requested.split(separator: " ").map(String.init))
        let got = Set(granted.split(separator: " ").map(String.init))
        let missing = want.subtracting(got).sorted()
        if !missing.isEmpty {
            add("invalid-scope", .warning, "Granted scope lacks \(missing.joined(separator: " "))", f,
                explanation: "The client asked for \"\(requested)\" and was granted \"\(granted)\" (RFC 6749 §3.3 lets the server narrow it). Calls that need \(missing.joined(separator: ", ")) will fail with 403/insufficient_scope.",
                fix: "Allow those scopes for the client (or grant admin consent), or stop depending on them.",
                evidence: ["requested": requested, "granted": granted, "missing": missing.joined(separator: " ")])
        }
    }

    // MARK: JWTs (clock-skew, jwt-invalid)

    mutating func jwts(_ f: ExchangeFacts) {
        guard f.tokenSucceeded, case .success(let body)? = f.json else { return }
        let reference = f.serverDate
        let local = f.start
        if let reference, abs(reference.timeIntervalSince(local)) > options.skewTolerance {
            let skew = Int(saturating: reference.timeIntervalSince(local).rounded())
            add("clock-skew", .warning, "Local clock is \(abs(skew)) s \(skew > 0 ? "behind" : "ahead of") the server", f,
                explanation: "The server's Date header says \(f.ex.responseHeaders.value(of: "date") ?? ""), while this machine's clock said \(ISO8601DateFormatter().string(from: local)) when the request left: \(abs(skew)) s apart. Token validation on this machine will see iat/nbf in the future or exp too early.",
                fix: "Synchronise the clock (timedatectl set-ntp true / chrony), and give the JWT library a small leeway (30–60 s).",
                evidence: ["server_date": f.ex.responseHeaders.value(of: "date") ?? "", "skew_seconds": String(skew)])
        }
        for name in ["id_token", "access_token"] {
            guard body[name] != nil else { continue }
            guard let jwt = f.jwt(name) else {
                if name == "id_token" {
                    add("jwt-invalid", .error, "id_token is not a JWT", f,
                        explanation: "OpenID Connect Core §2 requires the id_token to be a signed JWT; this one is not three base64url segments with a JSON header.",
                        fix: "Check the server's OIDC configuration (is 'openid' in scope, is the token endpoint the OIDC one?).",
                        evidence: ["id_token": body[name]?.text ?? ""])
                }
                continue
            }
            let alg = jwt.header["alg"]?.string ?? "(none)"
            if let fp = f.fingerprint(name, .responseBody), let check = signatureVerdicts[fp], check.verdict == "invalid" {
                add("jwt-invalid", .error, "\(name) signature does not verify against the captured JWKS", f, more: check.at.id == f.id ? [] : [check.at],
                    explanation: "authtap checked the \(name) (alg \(alg), kid \(jwt.header["kid"]?.string ?? "none")) against the key the JWKS published under that kid\(check.at.id == f.id ? "" : " at #\(check.at.id)"), while it still had the raw token: the signature is wrong. The token was altered, signed with another key (a rotated or test key), or the JWKS belongs to another issuer.",
                    fix: "Compare the token's iss with the JWKS's issuer, and check the signing key configuration on the server (key rotation publishes the new key before signing with it).",
                    evidence: ["alg": alg, "kid": jwt.header["kid"]?.string ?? "(none)", "token_fingerprint": fp, "verdict": "invalid"])
            }
            if alg.lowercased() == "none" {
                add("jwt-invalid", .error, "\(name) is unsigned (alg: none)", f,
                    explanation: "The \(name) header says alg=none: anyone can forge it. Libraries must reject it.",
                    fix: "Configure the server to sign tokens (RS256/ES256) and the client to reject alg=none.",
                    evidence: ["alg": alg])
            }
            let now = reference ?? local
            if let iat = jwt.claims["iat"]?.number, iat - now.timeIntervalSince1970 > options.skewTolerance {
                let d = Int(saturating: iat - now.timeIntervalSince1970)
                add("clock-skew", .warning, "\(name) issued \(d) s in the future", f,
                    explanation: "iat=\(Int(saturating: iat)) is \(d) s after \(reference == nil ? "this machine's clock" : "the server's Date header"): the server's signing clock runs ahead. Strict validators reject the token as not yet valid.",
                    fix: "Synchronise the token service's clock with NTP; allow 30–60 s leeway in validation.",
                    evidence: ["iat": String(Int(saturating: iat)), "skew_seconds": String(d)])
            }
            if let nbf = jwt.claims["nbf"]?.number, nbf - now.timeIntervalSince1970 > options.skewTolerance {
                let d = Int(saturating: nbf - now.timeIntervalSince1970)
                add("clock-skew", .warning, "\(name) not valid for another \(d) s (nbf)", f,
                    explanation: "nbf=\(Int(saturating: nbf)) is \(d) s in the future relative to \(reference == nil ? "this machine's clock" : "the server's Date header").",
                    fix: "Synchronise the clocks; allow a small leeway.",
                    evidence: ["nbf": String(Int(saturating: nbf)), "skew_seconds": String(d)])
            }
            if let exp = jwt.claims["exp"]?.number, exp < now.timeIntervalSince1970 {
                let d = Int(saturating: now.timeIntervalSince1970 - exp)
                add("clock-skew", .warning, "\(name) already expired when issued (\(d) s ago)", f,
                    explanation: "exp=\(Int(saturating: exp)) is \(d) s before \(reference == nil ? "this machine's clock" : "the server's Date header") at issuance.",
                    fix: "Check the token lifetime configuration and the server's clock.",
                    evidence: ["exp": String(Int(saturating: exp)), "skew_seconds": String(-d)])
            }
            guard name == "id_token" else { continue }
            let auth = authorizeFor(f)
            let clientID = f.clientID ?? auth?.value("client_id", .request)
            if let clientID {
                let aud: [String] = { switch jwt.claims["aud"] { case .string(let s)?: return [s]; case .array(let a)?: return a.compactMap(\.string); default: return [] } }()
                if !aud.isEmpty, !aud.contains(clientID) {
                    add("jwt-invalid", .error, "id_token audience does not include the client_id", f,
                        explanation: "aud=\(aud.joined(separator: ",")) but the client is \(clientID) (OIDC Core §3.1.3.7: the client must reject it).",
                        fix: "Check which client the token was issued for (a token from another app, or a misconfigured audience).",
                        evidence: ["aud": aud.joined(separator: ","), "client_id": clientID])
                }
            }
            if let iss = jwt.claims["iss"]?.string, !discoveredIssuers.isEmpty, !discoveredIssuers.contains(iss) {
                add("jwt-invalid", .error, "id_token issuer differs from the discovered issuer", f,
                    explanation: "iss=\(iss), but discovery announced \(discoveredIssuers.sorted().joined(separator: ", ")). A trailing slash or http vs https is the usual difference.",
                    fix: "Make the server's configured issuer URL match its public URL exactly (behind a proxy, set the external URL / X-Forwarded-Proto).",
                    evidence: ["iss": iss, "discovered": discoveredIssuers.sorted().joined(separator: ", ")])
            }
            if let sentNonce = auth?.value("nonce", .request), let nonce = jwt.claims["nonce"]?.string, nonce != sentNonce {
                add("jwt-invalid", .error, "id_token nonce differs from the one sent to /authorize", f, more: auth.map { [$0] } ?? [],
                    explanation: "The authorization request sent nonce=\(sentNonce); the id_token carries nonce=\(nonce). The token belongs to another authorization (replay, or overlapping sign-ins).",
                    fix: "Store the nonce with the state for each authorization and compare it with the id_token's.",
                    evidence: ["sent_nonce": sentNonce, "token_nonce": nonce])
            }
            if let kid = jwt.header["kid"]?.string, let kids = jwksKids, !kids.contains(kid) {
                add("jwt-invalid", .error, "id_token kid \(kid) is not in the captured JWKS", f,
                    explanation: "The token is signed with key \(kid), but the JWKS fetched in this session lists \(kids.sorted().joined(separator: ", ")). Signature validation will fail: keys were rotated and the client cached an old JWKS, or it fetched the JWKS of another tenant.",
                    fix: "Re-fetch the JWKS when a kid is unknown (most libraries do with a cache TTL), and use the jwks_uri from the same issuer's discovery document.",
                    evidence: ["kid": kid, "jwks_kids": kids.sorted().joined(separator: ", ")])
            }
        }
    }

    // MARK: non-json-response

    mutating func nonJSON(_ f: ExchangeFacts) {
        guard !f.roles.isDisjoint(with: ExchangeFacts.endpoints), let status = f.status, f.ex.error == nil else { return }
        let what = f.roles.contains(.token) ? "token endpoint" : f.roles.contains(.userinfo) ? "userinfo endpoint" : f.roles.contains(.introspection) ? "introspection endpoint" : f.roles.contains(.deviceAuthorization) ? "device authorization endpoint" : "PAR endpoint"
        let body = f.ex.responseBody
        let ct = f.contentType
        if f.roles.contains(.userinfo), ct.has("jwt") { return } // signed userinfo (OIDC Core §5.3.2)
        if status == 204 || status == 304 { return }
        if body.size == 0 {
            add("non-json-response", .error, "Empty response from the \(what) (HTTP \(status))", f,
                explanation: "The \(what) at \(f.ex.host)\(f.path) answered HTTP \(status) with no body. OAuth clients expect a JSON object and fail with a parse error (\"An invalid OAuth response was received\").",
                fix: status >= 500 ? "The server failed: check its logs." : "Check the URL (a proxy or gateway answering instead of the server), the method (POST), and the Accept header.",
                evidence: ["status": String(status), "content_type": ct.isEmpty ? "(none)" : ct, "body_size": "0"])
            return
        }
        let first = body.bytes.first { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        if ct.has("html") || first == UInt8(ascii: "<") {
            let title = f.htmlTitle
            let text = f.bodyText.lowercased()
            let kind: String
            let fix: String
            if text.has("cf-chl") || text.has("just a moment") || text.has("attention required") || text.has("incapsula") || text.has("request unsuccessful") || text.has("access denied") && text.has("reference #") || text.has("akamai") {
                kind = "a WAF/CDN challenge page"
                fix = "The request was stopped by a web application firewall or bot protection before reaching the server. Allow-list the token endpoint for server-to-server calls (no browser challenge can be solved there), or call the origin directly."
            } else if status >= 500 {
                kind = "a \(status) error page"
                fix = "The server or a gateway in front of it failed; retry later and check its status and logs."
            } else if text.has("type=\"password\"") || text.has("sign in") || text.has("log in") || text.has("login") {
                kind = "a login page"
                fix = "The request reached a page meant for a browser: the URL is the authorization endpoint or a UI route instead of the token endpoint, or a session-protected gateway redirected it. Use token_endpoint from the discovery document."
            } else {
                kind = "an HTML page"
                fix = "Use the token_endpoint URL from the discovery document (a wrong base path or a missing tenant/realm gives an HTML 404 page), and send Accept: application/json."
            }
            add("non-json-response", .error, "HTML instead of JSON from the \(what): \(kind)", f,
                explanation: "The \(what) at \(f.ex.host)\(f.path) answered HTTP \(status) with \(kind)\(title.map { " titled \"\($0)\"" } ?? ""). OAuth libraries try to parse it as JSON and report \"An invalid OAuth response was received\".",
                fix: fix,
                evidence: ["status": String(status), "content_type": ct.isEmpty ? "(none)" : ct, "title": title ?? "(none)"])
            return
        }
        switch f.json {
        case .success(let value)?:
            if !ct.has("json") {
                add("non-json-response", .warning, "JSON served with Content-Type \(ct.isEmpty ? "(none)" : ct)", f,
                    explanation: "The body is valid JSON but labelled \(ct.isEmpty ? "with no Content-Type" : ct); strict clients refuse it.",
                    fix: "Serve OAuth responses as application/json (RFC 6749 §5.1).",
                    evidence: ["content_type": ct.isEmpty ? "(none)" : ct])
            }
            if let report = f.error, status == 200 {
                add("non-json-response", .error, "Error reported with HTTP 200", f,
                    explanation: "The \(what) answered HTTP 200 with \(report.summary). RFC 6749 §5.2 requires 400 (or 401); clients that check the status first treat this as a success and then fail on a missing access_token.",
                    fix: report.dialect == "slack" ? "Slack reports errors with ok:false in a 200: check `ok` before reading tokens." : "Check the body for an `error` member before reading tokens (GitHub and Slack answer errors with 200).",
                    evidence: ["status": "200", "error": report.code])
            } else if f.roles.contains(.token), f.is2xx, f.error == nil, value.isObject {
                var problems: [String] = []
                if value["access_token"] == nil { problems.append("no access_token") }
                if value["token_type"] == nil { problems.append("no token_type") }
                if let e = value["expires_in"], e.number == nil { problems.append("expires_in is \(e.string.map { "the string \"\($0)\"" } ?? e.text), not a number") }
                if !problems.isEmpty {
                    add("non-json-response", .error, "Token response is missing required members: \(problems.joined(separator: "; "))", f,
                        explanation: "RFC 6749 §5.1: a successful token response has access_token and token_type, and expires_in is a number. This one has \(problems.joined(separator: "; ")).",
                        fix: "Fix the server's token response, or, for a legacy server, adapt the client's parser (many libraries have a token-response hook).",
                        evidence: ["problems": problems.joined(separator: "; ")])
                }
            }
        case .failure(let e)?:
            if body.truncated && e.endOfInput { return } // authtap recorded only a prefix
            add("non-json-response", .error, e.endOfInput ? "Truncated JSON from the \(what)" : "Malformed JSON from the \(what)", f,
                explanation: "The body does not parse as JSON: \(e.message) at byte \(e.offset) of \(body.bytes.count)." + (e.endOfInput ? " The response ended early: a connection cut, a Content-Length that is too long, or a gateway timeout." : ""),
                fix: "Look at the raw body around byte \(e.offset); fix the server's serialisation (or the proxy in front of it that rewrites bodies).",
                evidence: ["offset": String(e.offset), "parser": e.message])
        case nil:
            if ct.has("x-www-form-urlencoded") || ExchangeFacts.looksLikeForm(body.bytes) {
                let hasToken = ExchangeFacts.pairs(body.bytes).contains { $0.0 == "access_token" }
                add("non-json-response", hasToken ? .warning : .error, "Form-encoded response from the \(what)", f,
                    explanation: "The \(what) answered with a form-encoded body (\(ct.isEmpty ? "no Content-Type" : ct)). GitHub does this by default; JSON-only OAuth clients fail to parse it" + (hasToken ? ", even though it carries a token." : "."),
                    fix: "Send Accept: application/json with the token request.",
                    evidence: ["content_type": ct.isEmpty ? "(none)" : ct, "accept_sent": f.ex.requestHeaders.value(of: "accept") ?? "(none)"])
            } else {
                add("non-json-response", .error, "\(ct.isEmpty ? "Untyped" : ct) response from the \(what)", f,
                    explanation: "The \(what) answered HTTP \(status) with \(ct.isEmpty ? "an untyped body" : ct): \"\(String(f.bodyText.prefix(80)))\".",
                    fix: "Check the endpoint URL and that the request reached the authorization server (not a gateway or health page).",
                    evidence: ["content_type": ct.isEmpty ? "(none)" : ct, "status": String(status)])
            }
        }
    }

    // MARK: tls-fault and upstream-error

    mutating func tlsAndUpstream(_ f: ExchangeFacts) {
        switch f.ex.error {
        case .upstreamTLS?:
            let reason = f.ex.tlsFailure ?? .other
            let cert = f.ex.upstreamTLS?.peerCertificate
            let certText = cert.map { "subject \($0.subject), issuer \($0.issuer), SANs \($0.sans.joined(separator: ", ")), valid \(ISO8601DateFormatter().string(from: $0.notBefore)) to \(ISO8601DateFormatter().string(from: $0.notAfter))" }
            let (title, explanation, fix): (String, String, String) = {
                switch reason {
                case .untrustedIssuer: return ("Upstream certificate is not trusted", "The certificate of \(f.ex.host) does not chain to a trusted root\(certText.map { " (\($0))" } ?? ""): a private CA, a self-signed certificate, or a server that does not send its intermediate.", "If the server uses a private CA, give it to authtap with --upstream-ca FILE (and to your app). If it is public, fix the server to send the full chain.")
                case .expired: return ("Upstream certificate has expired", "The certificate of \(f.ex.host) has expired\(cert.map { " on \(ISO8601DateFormatter().string(from: $0.notAfter))" } ?? "").", "Renew the server's certificate (check the renewal job: certbot, cert-manager).")
                case .notYetValid: return ("Upstream certificate is not yet valid", "The certificate of \(f.ex.host) is valid only from \(cert.map { ISO8601DateFormatter().string(from: $0.notBefore) } ?? "a later date"): a clock problem here or on the issuer.", "Check this machine's clock, then the certificate's issuance.")
                case .hostnameMismatch: return ("Upstream certificate is for another host", "The certificate presented for \(f.ex.host) covers \(cert?.sans.joined(separator: ", ") ?? "other names").", "Use the host name the certificate covers, or get a certificate with \(f.ex.host) in its SANs.")
                case .protocolVersion: return ("Upstream did not answer with a TLS version authtap accepts", "The handshake with \(f.ex.host):\(f.ex.port) failed on the protocol version: either the port does not speak TLS at all (plain HTTP on a TLS port is the usual cause), or the server only offers TLS 1.0/1.1.", "Check the URL's scheme and port (http:// vs https://); if the server really is TLS, enable TLS 1.2 or 1.3 on it.")
                case .handshakeAlert: return ("Upstream aborted the handshake with an alert", "\(f.ex.host) sent a TLS alert during the handshake: \(f.ex.errorDetail ?? "no detail").", "Check the server's TLS configuration (cipher suites, required client certificates, SNI).")
                case .closedDuringHandshake: return ("Upstream reset the connection during the TLS handshake", "\(f.ex.host) closed or reset the connection in the middle of the handshake: a middlebox dropping TLS, a server that is not TLS on this port, or an SNI-based block.", "Check that the port speaks TLS, and firewalls between here and the server; run authtap capture to see the packets.")
                case .handshakeTimeout:
                    return ("Upstream did not finish the TLS handshake in time",
                            "\(f.ex.host):\(f.ex.port) accepted the TCP connection but did not complete the TLS handshake "
                                + "(\(f.ex.errorDetail ?? "no detail")): an overloaded server, a middlebox that swallows TLS, "
                                + "or a port that does not speak TLS and waits for the client to talk first.",
                            "Check that the port speaks TLS and that nothing between here and the server holds the "
                                + "handshake; raise --tls-handshake-timeout only if the server is known to be slow.")
                case .other: return ("Upstream TLS handshake failed", "The TLS handshake with \(f.ex.host) failed: \(f.ex.errorDetail ?? "no detail").", "Check the server's certificate and TLS configuration.")
                }
            }()
            var evidence: [String: String] = ["reason": reason.rawValue]
            if let cert {
                evidence["subject"] = cert.subject
                evidence["issuer"] = cert.issuer
                evidence["sans"] = cert.sans.joined(separator: ", ")
                evidence["not_after"] = ISO8601DateFormatter().string(from: cert.notAfter)
            }
            evidence.merge(handshakeEvidence(for: f, clientLeg: false)) { a, _ in a }
            add("tls-fault", .error, title, f, explanation: explanation, fix: fix, evidence: evidence)
        case .clientTLS? where f.ex.tlsFailure == .handshakeTimeout:
            add("tls-fault", .warning, "The client did not finish the TLS handshake in time", f,
                explanation: "A client opened a tunnel to \(f.ex.host) but did not complete the TLS handshake with authtap "
                    + "(\(f.ex.errorDetail ?? "no detail")): a client that stalled or went away, a slow-connection "
                    + "attack, or a client that does not speak TLS on this tunnel. Its certificate trust is not in question.",
                fix: "If a real client stalled, look at its side (a prompt, a proxy chain, a network drop); raise "
                    + "--tls-handshake-timeout only for a client known to be slow.",
                evidence: ["host": f.ex.host, "reason": TLSFailureReason.handshakeTimeout.rawValue]
                    .merging(handshakeEvidence(for: f, clientLeg: true)) { a, _ in a })
        case .clientTLS?:
            add("tls-fault", .error, "The client rejected authtap's certificate", f,
                explanation: "The client closed the TLS handshake for \(f.ex.host) after seeing authtap's certificate: it does not trust the authtap CA (\(f.ex.errorDetail ?? "no detail")). Nothing of this connection reached the server.",
                fix: "Trust the authtap CA in the client: eval \"$(authtap env)\" sets SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and NODE_EXTRA_CA_CERTS; for Java, keytool -importcert -alias authtap -file \(caPath) -cacerts; for a browser, import \(caPath) as an authority. Certificate pinning clients cannot be intercepted: exclude them with --intercept.",
                evidence: ["host": f.ex.host, "ca": caPath].merging(handshakeEvidence(for: f, clientLeg: true)) { a, _ in a })
        case .connectionRefused?, .dnsFailure?, .connectTimeout?, .connectFailed?, .upstreamReset?, .upstreamClosed?, .upstreamMalformed?:
            guard !f.roles.isEmpty else { return }
            add("upstream-error", .error, "Authorization server unreachable: \(f.ex.error?.rawValue ?? "")", f,
                explanation: "\(f.ex.error?.sentence ?? "") (\(f.ex.host):\(f.ex.port)\(f.ex.errorDetail.map { ": \($0)" } ?? "")).",
                fix: f.ex.error == .dnsFailure ? "Check the host name (a typo in the issuer URL, a missing tenant) and DNS." : "Check that the server is running and reachable on that port, and firewalls in between.",
                evidence: ["error_kind": f.ex.error?.rawValue ?? ""])
        default:
            guard let status = f.status, status >= 500, !f.roles.isEmpty else { return }
            add("upstream-error", .error, "The authorization server failed with HTTP \(status)", f,
                explanation: "\(f.ex.host)\(f.path) answered HTTP \(status)\(f.htmlTitle.map { " (\"\($0)\")" } ?? "")\(f.error.map { ": \($0.summary)" } ?? ""). The failure is on the server side or in a gateway in front of it.",
                fix: status == 502 || status == 503 || status == 504 ? "A gateway could not reach the server: check the server's health and the gateway's timeouts, then retry." : "Check the server's logs for this request; retry with backoff.",
                evidence: ["status": String(status)])
        }
    }

    // MARK: refresh tokens

    mutating func refreshChains() {
        // Fingerprint → the exchange that issued it, and where it was rotated.
        var issuedBy: [String: ExchangeFacts] = [:]
        var rotatedAt: [String: ExchangeFacts] = [:]
        var revokedAt: [String: ExchangeFacts] = [:]
        for f in facts {
            if f.roles.contains(.revocation), let fp = f.fingerprint("token", .request) { revokedAt[fp] = f }
            guard f.roles.contains(.token) else { continue }
            let sent = f.isRefresh ? f.fingerprint("refresh_token", .request) : nil
            if let sent {
                if let rotation = rotatedAt[sent] {
                    add("refresh-token-reuse", .error, "Refresh token used again after it was rotated", f, more: [rotation],
                        explanation: "This refresh token (fingerprint \(sent)) was already exchanged at #\(rotation.id), which returned a new refresh token. Using the old one again is what rotation detects as theft (RFC 9700 §4.14.2): the server rejects it\(f.tokenSucceeded ? " (this one accepted it, so rotation is not enforced)" : "") and may revoke the whole token family, signing the user out.",
                        fix: "Store the new refresh token from every refresh response before using it, and serialise refreshes: several tabs or parallel requests refreshing at once is the usual cause (use a lock or a single refresh promise).",
                        evidence: ["refresh_token": f.value("refresh_token", .request) ?? sent, "rotated_at": "#\(rotation.id)", "first_issued_at": issuedBy[sent].map { "#\($0.id)" } ?? "(not captured)"])
                } else if !f.tokenSucceeded, f.errorClass == .invalidGrant || f.errorClass == .refreshExpired || f.errorClass == .refreshRevoked || f.errorClass == .refreshInvalid {
                    let revoke = revokedAt[sent]
                    let cls = f.errorClass ?? .other
                    let why: String
                    if let revoke { why = "it was revoked by the client at #\(revoke.id)" }
                    else if cls == .refreshRevoked { why = "the server says it was revoked (sign-out, password change, admin action or a detected reuse)" }
                    else if cls == .refreshExpired { why = "the server says it expired (absolute lifetime or inactivity timeout)" }
                    else if let issued = issuedBy[sent] { why = "it was issued at #\(issued.id), \(Self.seconds(f.start.timeIntervalSince(issued.start))) earlier, and not used since; the server gives no reason (expired or revoked)" }
                    else { why = "the server gives no reason: it expired, was revoked, or was rotated by a refresh this capture did not see" }
                    add("refresh-token-reuse", .error, "Refresh token rejected: \(revoke != nil || cls == .refreshRevoked ? "revoked" : cls == .refreshExpired ? "expired" : "expired or revoked")", f, more: [revoke].compactMap { $0 },
                        explanation: "The refresh at \(f.ex.host) failed with \(f.error?.summary ?? "an error"): \(why).",
                        fix: "Treat invalid_grant on refresh as 'sign in again': clear the stored tokens and start a new authorization. If it happens early, check the server's refresh token lifetime and idle timeout.",
                        evidence: ["refresh_token": f.value("refresh_token", .request) ?? sent])
                }
            }
            if f.tokenSucceeded, let new = f.fingerprint("refresh_token", .responseBody) {
                issuedBy[new] = issuedBy[new] ?? f
                if let sent, sent != new { rotatedAt[sent] = f }
            }
        }
    }

    // MARK: missing-leg

    mutating func missingLegs() {
        for (fp, issuers) in codeIssued where codeRedeemed[fp] == nil {
            guard let first = issuers.first, first.error == nil else { continue }
            // The callback is where the client receives the code; the authorization response alone may be a browser hop.
            add("missing-leg", .warning, "Code issued but never exchanged through authtap", first, more: Array(issuers.dropFirst()),
                explanation: "A code (fingerprint \(fp)) reached the client at #\(first.id), but no token request with it went through authtap. The back channel (your backend calling the token endpoint) bypasses the proxy, or the client stopped before exchanging it.",
                fix: "Point the backend at authtap too: HTTPS_PROXY=http://127.0.0.1:8080 and the authtap CA in its trust store (eval \"$(authtap env)\"), and make sure NO_PROXY does not list the authorization server's host.",
                evidence: ["code_fingerprint": fp, "issued_at": issuers.map { "#\($0.id)" }.joined(separator: ", ")])
        }
    }
}
