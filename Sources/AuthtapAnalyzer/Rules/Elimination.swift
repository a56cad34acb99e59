import AuthtapModel

/// Diagnosis by elimination for a refused code grant the server does not explain: each cause the capture can
/// speak to, ruled out, supported or unknown, with the evidence. Shared by the rules that report the verdict
/// (code-expired, when it is the only cause left) and the refusal that stays open (invalid-grant).
struct Elimination {
    var candidates: [Finding.Candidate] = []

    /// The causes still possible.
    var open: [Finding.Candidate] { candidates.filter { $0.status != .ruledOut } }
    /// The one cause left, when every other is ruled out.
    var verdict: Finding.Candidate? { open.count == 1 ? open.first : nil }
    /// What would decide between the causes still open.
    var decider: String? {
        guard open.count > 1 else { return nil }
        if open.contains(where: { $0.evidence.hasPrefix("authorization request not captured") }) {
            return "capture the /authorize leg too (the browser through the proxy, or import its HAR)"
        }
        return "the server's own log for this request names the cause"
    }

    init(_ f: ExchangeFacts, _ c: RuleContext) {
        let auth = c.authorizeFor(f)
        let code = f.fingerprint("code", .request)
        let issued = code.flatMap { c.codeIssued[$0]?.first }
        let notCaptured = "authorization request not captured"
        // Reuse: only a capture that saw the code issued can say it was presented once.
        let sends = code.map { c.codeRedeemed[$0]?.count ?? 0 } ?? 0
        if sends > 1 {
            add("code-reuse", .supported, "code sent \(sends) times")
        } else if issued != nil {
            add("code-reuse", .ruledOut, "code issued at #\(issued.map { "\($0.id)" } ?? "?") and presented once")
        } else {
            add("code-reuse", .unknown, "code issuance not captured: an earlier use cannot be ruled out")
        }
        // Expiry: the gap since issue, against the lifetime a server may use.
        if let issued {
            let gap = f.start.timeIntervalSince(issued.start)
            let text = "code presented \(RuleContext.seconds(gap)) after issue"
            add("code-expired", gap >= c.options.codeLifetime ? .supported : .unknown, text)
        } else {
            add("code-expired", .unknown, "code issuance not captured: the gap is unknown")
        }
        guard let auth else {
            for cause in ["redirect-uri-mismatch", "pkce-mismatch", "invalid-client", "wrong-endpoint"] {
                add(cause, .unknown, notCaptured)
            }
            return
        }
        // redirect_uri, compared exactly.
        let a = auth.value("redirect_uri", .request)
        let t = f.value("redirect_uri", .request)
        add(
            "redirect-uri-mismatch", a == t ? .ruledOut : .supported,
            a == t ? "redirect_uri identical at /authorize and /token" : "redirect_uri \(a ?? "none") vs \(t ?? "none")"
        )
        // PKCE: the verifier's S256 against the challenge (a plain challenge by fingerprint).
        let challenge = auth.param("code_challenge", .request)
        let verifier = f.param("code_verifier", .request)
        if challenge == nil && verifier == nil {
            add("pkce-mismatch", .ruledOut, "no PKCE on either leg")
        } else if let challenge, let verifier {
            let match =
                challenge.fingerprint.map { $0 == verifier.fingerprint }
                ?? (challenge.value == f.value("code_verifier_s256", .derived))
            add(
                "pkce-mismatch", match ? .ruledOut : .supported,
                match ? "code_verifier matches the code_challenge" : "code_verifier does not match the code_challenge")
        } else {
            add(
                "pkce-mismatch", .supported,
                challenge == nil
                    ? "code_verifier sent without a code_challenge" : "code_challenge sent, no code_verifier")
        }
        // The client the code was issued to.
        let ac = auth.value("client_id", .request)
        let tc = f.clientID
        if let ac, let tc {
            add(
                "invalid-client", ac == tc ? .ruledOut : .supported,
                ac == tc ? "same client_id on both legs" : "client_id \(ac) vs \(tc)")
        } else {
            add("invalid-client", .unknown, "client_id not visible on both legs")
        }
        // The same issuer: host and the path up to the endpoint's name (a Keycloak realm, an Entra tenant).
        let sameIssuer = auth.ex.host == f.ex.host && Self.parent(auth.path) == Self.parent(f.path)
        add(
            "wrong-endpoint", sameIssuer ? .ruledOut : .unknown,
            sameIssuer
                ? "same issuer for /authorize and /token (\(f.ex.host)\(Self.parent(f.path)))"
                : "\(auth.ex.host)\(Self.parent(auth.path)) vs \(f.ex.host)\(Self.parent(f.path))")
    }

    init() {}

    /// A path without its last segment: `/realms/a/protocol/openid-connect`.
    static func parent(_ path: String) -> Substring {
        let trimmed = path.hasSuffix("/") ? path.dropLast() : Substring(path)
        return trimmed.lastIndex(of: "/").map { trimmed[..<$0] } ?? trimmed
    }

    mutating func add(_ cause: String, _ status: Finding.Candidate.Status, _ evidence: String) {
        candidates.append(.init(cause, status, evidence))
    }

    /// The candidates as one line of evidence.
    var summary: String {
        candidates.map { "\($0.cause): \($0.status.rawValue) (\($0.evidence))" }.joined(separator: "; ")
    }
}

extension Elimination {
    /// A refused client authentication: the secret, the method, the client_id, public vs confidential, the
    /// endpoint, each against what the capture shows (an earlier success of the same client, the /authorize leg).
    static func client(_ f: ExchangeFacts, _ c: RuleContext) -> Elimination {
        var e = Elimination()
        let id = f.clientID
        let secret = f.fingerprint("client_secret", .request)
        let basic = f.param("client_id", .requestHeaderAuthorization) != nil
        let earlier = c.lastSuccessBefore[f.id]
        if let earlier, let secret, let before = earlier.fingerprint("client_secret", .request) {
            e.add(
                "invalid-client", before == secret ? .ruledOut : .supported,
                before == secret
                    ? "the same secret (fingerprint \(secret)) worked at #\(earlier.id)"
                    : "the secret differs from the one that worked at #\(earlier.id) (\(before) vs \(secret))")
        } else {
            e.add("invalid-client", .unknown, "no earlier success of this client to compare the secret with")
        }
        if let earlier {
            let before = earlier.param("client_id", .requestHeaderAuthorization) != nil
            e.add(
                "auth-method", before == basic ? .ruledOut : .supported,
                before == basic
                    ? "same method as the success at #\(earlier.id)"
                    : "\(basic ? "Basic" : "body") here, \(before ? "Basic" : "body") at the success #\(earlier.id)")
        } else {
            e.add("auth-method", .unknown, basic ? "Basic credentials" : "credentials in the body")
        }
        if let auth = c.authorizeFor(f), let a = auth.value("client_id", .request) {
            e.add(
                "client-mismatch", a == id ? .ruledOut : .supported,
                a == id ? "same client_id at /authorize" : "client_id \(a) at /authorize, \(id ?? "none") here")
            e.add(
                "wrong-endpoint", auth.ex.host == f.ex.host ? .ruledOut : .unknown,
                auth.ex.host == f.ex.host ? "same host as /authorize" : "\(auth.ex.host) vs \(f.ex.host)")
        } else {
            e.add("client-mismatch", .unknown, "authorization request not captured")
            e.add("wrong-endpoint", .unknown, "authorization request not captured")
        }
        let pkce = f.param("code_verifier", .request) != nil
        e.add(
            "public-client-with-secret", pkce && (secret != nil || basic) ? .unknown : .ruledOut,
            pkce && (secret != nil || basic)
                ? "PKCE and a secret: a client registered as public has none"
                : "not a PKCE client sending a secret")
        return e
    }

    /// A token request the server calls malformed: encoding, required parameters, repeats, double credentials.
    static func request(_ f: ExchangeFacts) -> Elimination {
        var e = Elimination()
        let type = (f.ex.requestHeaders.value(of: "content-type") ?? "").lowercased()
        let form = type.has("application/x-www-form-urlencoded")
        e.add("body-encoding", form ? .ruledOut : .supported, form ? "form-encoded" : "sent as \(type)")
        var seen: [String: Int] = [:]
        for p in f.ex.oauthParams where p.location == .requestBody { seen[p.name, default: 0] += 1 }
        let repeated = Set(seen.filter { $0.value > 1 }.keys)
        e.add(
            "repeated-parameter", repeated.isEmpty ? .ruledOut : .supported,
            repeated.isEmpty ? "each parameter once" : "sent twice: \(repeated.sorted().joined(separator: ", "))")
        let required: [String: [String]] = [
            "authorization_code": ["code"], "refresh_token": ["refresh_token"], "password": ["username", "password"],
        ]
        if let grant = f.grantType, let need = required[grant] {
            let missing = need.filter { f.param($0, .request) == nil }
            e.add(
                "missing-parameter", missing.isEmpty ? .ruledOut : .supported,
                missing.isEmpty ? "has \(need.joined(separator: ", "))" : "lacks \(missing.joined(separator: ", "))")
        } else {
            e.add("missing-parameter", f.grantType == nil ? .supported : .unknown, f.grantType ?? "no grant_type")
        }
        let basic = f.param("client_id", .requestHeaderAuthorization) != nil
        let body = f.param("client_secret", .requestBody) != nil || f.param("client_assertion", .requestBody) != nil
        e.add(
            "credentials-twice", basic && body ? .supported : .ruledOut,
            basic && body ? "Basic header and body credentials" : "one authentication method")
        if f.isCodeGrant {
            let charset = f.value("code_verifier_charset", .derived)
            e.add(
                "pkce-mismatch", charset == nil || charset == "valid" ? .unknown : .supported,
                charset.map { "code_verifier \($0)" } ?? "no code_verifier")
        }
        return e
    }
}
