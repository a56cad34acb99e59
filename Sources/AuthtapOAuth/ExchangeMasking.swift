import AuthtapModel
import Crypto
import Foundation

extension Masker {
    /// Turns a raw captured exchange into the recordable one: every secret masked,
    /// OAuth roles recognised, parameters extracted, and raw-value checks done now
    /// (only their public results are kept, e.g. `code_verifier_s256`).
    /// - Parameter ledger: when given, JWT signatures are checked against the JWKS seen in this run.
    public func record(_ raw: Exchange, ledger: JWTLedger? = nil) -> Exchange {
        var masking = self
        masking.memo = FingerprintMemo()
        return masking.maskAndRecognize(raw, ledger: ledger)
    }

    /// `record`, on a masker whose `memo` collects the fingerprints it computes.
    private func maskAndRecognize(_ captured: Exchange, ledger: JWTLedger?) -> Exchange {
        // Bodies decoded first (gzip, charset): every later look, raw or masked, reads text.
        var raw = captured
        raw.requestBody = decodedBody(captured.requestBody, headers: captured.requestHeaders)
        raw.responseBody = decodedBody(captured.responseBody, headers: captured.responseHeaders)
        var ex = raw
        var params: [OAuthParam] = []
        ex.target = maskURL(raw.target, location: .requestTarget, params: &params)
        ex.requestHeaders = maskHeaders(raw.requestHeaders, location: .requestHeader, params: &params)
        ex.requestBody = maskDecoded(
            raw.requestBody, headers: raw.requestHeaders, location: .requestBody,
            params: &params)
        var responseParams: [OAuthParam] = []
        ex.responseHeaders = maskHeaders(raw.responseHeaders, location: .response, params: &responseParams)
        ex.responseBody = maskDecoded(
            raw.responseBody, headers: raw.responseHeaders, location: .responseBody,
            params: &responseParams)
        params += responseParams
        if let detail = raw.errorDetail {
            ex.errorDetail = maskFreeText(detail)
        }

        // Results of capture-time checks carried by the source (an imported authtap HAR) are kept as they are.
        let carried = raw.oauthParams.filter { $0.location == .derived }
        params += carried
        params += Self.pkceFacts(raw, params: params, carried: carried)

        let path = String(raw.target.prefix { $0 != "?" && $0 != "#" })
        ex.roles = Recognizer.roles(
            for: .init(
                method: raw.method, path: path, status: raw.status, params: params,
                requestHeaders: ex.requestHeaders, responseHeaders: ex.responseHeaders))
        if let ledger {
            // Roles are needed first; a verdict param does not change them.
            let verdicts = ledger.observe(raw, roles: ex.roles) { token in
                memo?.fingerprint(of: token) ?? fingerprinter.fingerprint(token)
            }
            if !verdicts.isEmpty {
                params += verdicts
                if ex.roles.isEmpty { ex.roles = [.jwks] }
            }
        }
        ex.oauthParams = ex.roles.isEmpty ? [] : Self.recordable(params)
        return ex
    }

    /// Secrets already carry their short marker; a JWT's header and claims stay readable in the body or header.
    /// Long readable values are cut (rare: most exchanges keep their params as they are, uncopied).
    private static func recordable(_ params: [OAuthParam]) -> [OAuthParam] {
        var params = params
        for i in params.indices where params[i].fingerprint == nil && params[i].value.utf8.count > 2048 {
            params[i].value = String(params[i].value.prefix(2048)) + "…"
        }
        return params
    }

    /// PKCE: S256(code_verifier) is public; kept so a later check can compare it with code_challenge, with the
    /// verifier's charset verdict. Nothing when the source carried them already or the verifier is masked.
    private static func pkceFacts(_ raw: Exchange, params: [OAuthParam], carried: [OAuthParam]) -> [OAuthParam] {
        var derived: [OAuthParam] = []
        if params.contains(where: { $0.name == "code_verifier" }),
            !carried.contains(where: { $0.name == "code_verifier_s256" }),
            let verifier = Masker.rawValue(named: "code_verifier", in: raw), Masker.alreadyMasked(verifier) == nil
        {
            let digest = SHA256.hash(data: Array(verifier.utf8))
            derived.append(OAuthParam(location: .derived, name: "code_verifier_s256", value: JWT.base64URL(digest)))
            // RFC 7636 §4.1: unreserved characters only. Only the verdict is kept.
            let valid = verifier.utf8.allSatisfy { c in
                (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
                    || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_")
                    || c == UInt8(ascii: "~")
            }
            derived.append(
                OAuthParam(location: .derived, name: "code_verifier_charset", value: valid ? "valid" : "invalid"))
        }
        return derived
    }

    /// A raw request parameter value (query or form body), read in memory only.
    static func rawValue(named name: String, in raw: Exchange) -> String? {
        let query =
            raw.target.utf8.firstIndex(of: UInt8(ascii: "?")).map {
                Array(raw.target.utf8[raw.target.utf8.index(after: $0)...])
            } ?? []
        let wanted = Array(name.utf8)
        for source in [query, raw.requestBody.bytes] {
            // Pair by pair without splitting into an array; a name is decoded only when it is escaped.
            var start = 0
            while start < source.count {
                let end = source[start...].firstIndex(of: UInt8(ascii: "&")) ?? source.count
                if let eq = source[start..<end].firstIndex(of: UInt8(ascii: "=")) {
                    let key = source[start..<eq]
                    let escaped = key.contains { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }
                    if escaped ? FormCoding.decode(bytes: key) == name : key.elementsEqual(wanted) {
                        return FormCoding.decode(bytes: source[(eq + 1)..<end])
                    }
                }
                start = end + 1
            }
        }
        return nil
    }
}
