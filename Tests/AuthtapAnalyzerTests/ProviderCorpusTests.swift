import AuthtapModel
import Foundation
import Testing

@testable import AuthtapAnalyzer

/// Real provider error responses (`Tests/fixtures/provider-errors.jsonl`, each with the public source it was
/// quoted from), each turned into the exchange it answered and analyzed alone. The root-cause error finding
/// must be the case's `rule`; a case the response alone cannot decide must name its candidates.
struct ProviderCase: Sendable, CustomStringConvertible {
    var id: String
    var leg: String
    var status: Int
    var headers: [(String, String)]
    var url: String?
    var body: String
    var rule: String
    var decidable: Bool
    var candidates: [String]
    var description: String { id }

    static let all: [ProviderCase] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fixtures/provider-errors.jsonl")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            let headers = (o["headers"] as? [String: Any] ?? [:]).compactMap { k, v in (v as? String).map { (k, $0) } }
            return ProviderCase(
                id: o["id"] as? String ?? "?", leg: o["leg"] as? String ?? "token", status: o["status"] as? Int ?? 400,
                headers: headers, url: o["url"] as? String, body: o["body"] as? String ?? "",
                rule: o["rule"] as? String ?? "?", decidable: o["decidable"] as? Bool ?? true,
                candidates: o["candidates"] as? [String] ?? [])
        }
    }()

    /// The request each leg answers, as a client of that provider sends it.
    var request: (method: String, url: String, body: String) {
        let idp = "https://idp.example"
        let cb = "https%3A%2F%2Fapp.example%2Fcb"
        switch leg {
        case "refresh":
            return (
                "POST", "\(idp)/oauth2/token",
                "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&client_id=app1"
            )
        case "client_credentials":
            return (
                "POST", "\(idp)/oauth2/token", "grant_type=client_credentials&client_id=svc1&client_secret=s3cr3t-v4lue"
            )
        case "password":
            return (
                "POST", "\(idp)/oauth2/token", "grant_type=password&username=alice&password=pa55word&client_id=app1"
            )
        case "device":
            return (
                "POST", "\(idp)/oauth2/token",
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
                    + "&device_code=GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS&client_id=app1"
            )
        case "jwt-bearer":
            return (
                "POST", "\(idp)/oauth2/token",
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                    + "&assertion=\(jwt(claims: #"{"iss":"svc","aud":"https://idp.example"}"#))"
            )
        case "token-exchange":
            return (
                "POST", "\(idp)/oauth2/token",
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=ya29.a0AfH6SMBx"
                    + "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
            )
        case "revocation":
            return ("POST", "\(idp)/oauth2/revoke", "token=tGzv3JOkF0XG5Qx2TlKWIA&client_id=app1")
        case "authorize":
            return (
                "GET",
                url.flatMap {
                    $0.contains("client_id=") && $0.contains("redirect_uri=") && $0.hasPrefix("http") ? $0 : nil
                }
                    ?? "\(idp)/oauth2/authorize?response_type=code&client_id=app1&redirect_uri=\(cb)"
                    + "&scope=openid&state=af0ifjsldkj",
                ""
            )
        case "callback":
            return ("GET", url ?? "https://app.example/cb?error=server_error&state=af0ifjsldkj", "")
        case "app-callback":
            return ("GET", "https://app.example/cb?code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj", "")
        default:
            return (
                "POST", "\(idp)/oauth2/token",
                "grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA&redirect_uri=\(cb)&client_id=app1"
                    + "&code_verifier=\(verifier)"
            )
        }
    }

    /// The one exchange, as the proxy would record it.
    func exchange() -> Exchange {
        let (method, url, requestBody) = request
        let (scheme, rest) =
            url.range(of: "://").map { (String(url[..<$0.lowerBound]), url[$0.upperBound...]) }
            ?? ("https", Substring(url))
        let slash = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<slash]
        var target = String(rest[slash...])
        if target.isEmpty || target.first != "/" { target = "/" + target }
        let host = authority.split(separator: ":").first.map(String.init) ?? "app.example"
        var e = Exchange(
            connectionID: 1, clientAddress: "127.0.0.1:5000", scheme: scheme == "http" ? .http : .https,
            host: host.isEmpty ? "app.example" : host, port: 443, method: method, target: target, start: t0)
        e.status = leg == "callback" ? 200 : status
        if !requestBody.isEmpty {
            e.requestHeaders = [HeaderField("Content-Type", "application/x-www-form-urlencoded")]
            e.requestBody = CapturedBody(bytes: Array(requestBody.utf8), size: requestBody.utf8.count)
        }
        // A callback is the app's own page; the provider's answer is what the other legs got.
        let responseBody = leg == "callback" ? "<html><body>Signing you in…</body></html>" : body
        var headers = leg == "callback" ? [("Content-Type", "text/html")] : self.headers
        // A redirect quoted by its target: the target is where the Location pointed.
        if leg == "authorize", (300..<400).contains(status), let target = self.url, !target.contains("client_id="),
            !headers.contains(where: { $0.0.lowercased() == "location" })
        {
            headers.append(("Location", target))
        }
        if !headers.contains(where: { $0.0.lowercased() == "content-type" }), !responseBody.isEmpty {
            let first = responseBody.first { !$0.isWhitespace }
            let type =
                first == "{" || first == "["
                ? "application/json"
                : first == "<" ? "text/html" : "text/plain"
            headers.append(("Content-Type", type))
        }
        e.responseHeaders = headers.map { HeaderField($0.0, $0.1) }
        e.responseBody = CapturedBody(bytes: Array(responseBody.utf8), size: responseBody.utf8.count)
        e.timings.end = 12
        var recorded = masker.record(e)
        recorded.id = 1
        return recorded
    }
}

/// The root cause the analysis names: the finding marked root (an error, or a warning where nothing failed
/// harder, such as a user's access_denied).
func rootCause(of analysis: Analysis) -> Finding? {
    analysis.findings.filter { $0.rootCause == true }.max { $0.severity < $1.severity }
}

@Suite struct ProviderCorpusTests {
    @Test func theCorpusIsLoadedAndLarge() {
        #expect(ProviderCase.all.count >= 200)
    }

    /// Every case, scored per expected rule; at least 97 % right overall.
    @Test func providerResponsesAreClassified() {
        var right: [String: Int] = [:]
        var total: [String: Int] = [:]
        var misses: [String] = []
        for c in ProviderCase.all {
            let analysis = Analyzer().analyze([c.exchange()])
            let errors = analysis.findings.filter { $0.severity == .error }
            let root = rootCause(of: analysis)
            var ok: Bool
            if c.rule == "none" {
                ok = errors.isEmpty
            } else {
                ok = root?.rule.rawValue == c.rule && errors.allSatisfy { $0.rootCause == true }
            }
            // An undecidable case must list the causes it could be.
            // An undecidable case may stay a generic refusal, as long as that lists the causes still open, or
            // name one of its candidates (what the server's words say, when the thread found another cause).
            if !ok, !c.decidable, let root, errors.allSatisfy({ $0.rootCause == true }) {
                if root.rule.rawValue == "invalid-grant" {
                    ok = Set((root.candidates ?? []).map(\.cause)).count >= 2 || c.leg != "token"
                } else {
                    ok = c.candidates.contains(root.rule.rawValue)
                }
            }
            total[c.rule, default: 0] += 1
            if ok {
                right[c.rule, default: 0] += 1
            } else {
                let got = analysis.findings.filter { $0.severity >= .warning }.map {
                    "\($0.rule)\($0.rootCause == true ? "*" : "")"
                }.joined(separator: ",")
                misses.append("\(c.id): want \(c.rule), got [\(got)]")
            }
        }
        let score = Double(right.values.reduce(0, +)) / Double(max(1, ProviderCase.all.count))
        var table = "| rule | right | cases |\n|---|---|---|\n"
        for rule in total.keys.sorted() {
            table += "| \(rule) | \(right[rule] ?? 0) | \(total[rule] ?? 0) |\n"
        }
        let summary = String(format: "%.1f %%", score * 100)
        print("provider corpus: \(summary) right\n\(table)\(misses.joined(separator: "\n"))")
        if let path = ProcessInfo.processInfo.environment["AUTHTAP_CORPUS_REPORT"] {
            try? ("\(summary)\n\(table)").write(toFile: path, atomically: true, encoding: .utf8)
        }
        #expect(score >= 0.97, "\(misses.count) misses:\n\(misses.joined(separator: "\n"))")
    }
}
