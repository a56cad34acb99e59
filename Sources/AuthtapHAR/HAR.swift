import AuthtapAnalyzer
import AuthtapModel
import Foundation
import Synchronization

/// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), written by hand: the spec's shape,
/// plus authtap's facts in `_authtap` fields (the spec allows custom fields with a leading underscore).
public enum HARExport {
    public struct Context {
        public var exchanges: [Exchange]
        public var analysis: Analysis
        public var handshakes: [HandshakeRecord]
        public var creatorVersion: String
        public init(
            exchanges: [Exchange], analysis: Analysis, handshakes: [HandshakeRecord] = [], creatorVersion: String
        ) {
            self.exchanges = exchanges
            self.analysis = analysis
            self.handshakes = handshakes
            self.creatorVersion = creatorVersion
        }
    }

    /// One transaction of a session's stored analysis: its exchanges, itself and its findings.
    public static func transaction(
        _ number: Int, of analysis: Analysis, exchanges: [Exchange], handshakes: [HandshakeRecord] = [],
        creatorVersion: String
    ) -> Context? {
        guard let t = analysis.transactions.first(where: { $0.index == number }) else { return nil }
        let members = Set(t.members.map(\.exchange))
        return Context(
            exchanges: exchanges.filter { members.contains($0.id ?? 0) },
            analysis: Analysis(transactions: [t], findings: analysis.findings.filter { $0.transaction == number }),
            handshakes: handshakes, creatorVersion: creatorVersion)
    }

    /// The HAR document as a JSON object tree (`[String: Any]`), ready for JSONSerialization.
    public static func document(_ c: Context) -> [String: Any] {
        var transactionOf: [Int64: Int] = [:]
        for t in c.analysis.transactions { for m in t.members { transactionOf[m.exchange] = t.index } }
        var findingsOf: [Int64: [Int]] = [:]
        for (i, f) in c.analysis.findings.enumerated() { for e in f.exchanges { findingsOf[e, default: []].append(i) } }
        let ordered = c.exchanges.sorted { ($0.id ?? 0) < ($1.id ?? 0) }
        var entryIndex: [Int64: Int] = [:]
        for (i, e) in ordered.enumerated() { entryIndex[e.id ?? 0] = i }
        let entries = ordered.map {
            entry($0, transaction: transactionOf[$0.id ?? 0], findings: findingsOf[$0.id ?? 0] ?? [])
        }
        let findings: [[String: Any]] = c.analysis.findings.enumerated().map { i, f in
            var d: [String: Any] = [
                "id": i, "rule": f.rule.rawValue, "severity": f.severity.rawValue, "title": f.title,
                "explanation": f.explanation, "fix": f.fix,
                "exchanges": f.exchanges, "entries": f.exchanges.compactMap { entryIndex[$0] }, "evidence": f.evidence,
            ]
            if let t = f.transaction { d["transaction"] = t }
            return d
        }
        let transactions: [[String: Any]] = c.analysis.transactions.map { t in
            var d: [String: Any] = [
                "id": t.index, "outcome": t.outcome, "startedDateTime": iso(t.startedAt),
                "entries": t.members.compactMap { entryIndex[$0.exchange] }, "legs": t.members.map(\.leg.rawValue),
            ]
            if let v = t.clientID { d["client_id"] = v }
            if let v = t.serverHost { d["server_host"] = v }
            if let v = t.grantType { d["grant_type"] = v }
            return d
        }
        let handshakes: [[String: Any]] = c.handshakes.map { h in
            var d: [String: Any] = [
                "client": "\(h.client):\(h.clientPort)", "server": "\(h.server):\(h.serverPort)",
                "outcome": h.outcome.rawValue,
                "firstPacket": h.firstPacket, "lastPacket": h.lastPacket, "detail": h.detail,
                "startedDateTime": iso(Date(timeIntervalSince1970: Double(h.startMicros) / 1e6)),
            ]
            if let v = h.side { d["side"] = v }
            if let v = h.alert { d["alert"] = v }
            if let v = h.sni { d["sni"] = v }
            return d
        }
        return [
            "log": [
                "version": "1.2",
                "creator": ["name": "authtap", "version": c.creatorVersion],
                "pages": [],
                "entries": entries,
                "comment":
                    "Exported by authtap: every secret is masked ([masked KIND len=N fp=…]); safe to attach to a ticket.",
                "_authtap": [
                    "masked": true, "findings": findings, "transactions": transactions, "handshakes": handshakes,
                ],
            ] as [String: Any]
        ]
    }

    public static func data(_ c: Context) throws -> Data {
        try JSONSerialization.data(
            withJSONObject: document(c), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    static func entry(_ e: Exchange, transaction: Int?, findings: [Int]) -> [String: Any] {
        let (timings, time) = timingsObject(e.timings)
        var entry: [String: Any] = [
            "startedDateTime": iso(e.timings.start), "time": round3(time), "request": requestObject(e),
            "response": responseObject(e), "cache": [String: Any](), "timings": timings,
            "connection": String(e.connectionID),
            "_authtap": authtapObject(e, transaction: transaction, findings: findings),
        ]
        if let error = e.error {
            // Failed exchanges stay in the HAR (most tools drop them), with the reason.
            entry["_error"] = "\(error.rawValue): \(e.errorDetail ?? error.sentence)"
        }
        return entry
    }

    /// HAR's phases from authtap's offsets, and their sum (the entry's `time`).
    static func timingsObject(_ t: Timings) -> (timings: [String: Any], time: Double) {
        let connectEnd = t.connect
        let tlsEnd = t.tls
        let setupEnd = tlsEnd ?? connectEnd ?? 0
        // HAR: ssl is included in connect; -1 where a phase did not happen (a reused connection).
        let connect = connectEnd.map { _ in setupEnd } ?? -1
        let ssl = tlsEnd.flatMap { tls in connectEnd.map { tls - $0 } } ?? -1
        let send = t.requestSent.map { max(0, $0 - setupEnd) } ?? 0
        let wait = t.firstByte.flatMap { first in t.requestSent.map { max(0, first - $0) } } ?? 0
        let receive = t.end.flatMap { end in t.firstByte.map { max(0, end - $0) } } ?? 0
        let timings: [String: Any] = [
            "blocked": -1, "dns": -1, "connect": round3(connect), "ssl": round3(ssl), "send": round3(send),
            "wait": round3(wait), "receive": round3(receive),
        ]
        let time = [connect, send, wait, receive].filter { $0 >= 0 }.reduce(0, +)

        return (timings, time)
    }

    static func requestObject(_ e: Exchange) -> [String: Any] {
        let url = e.method == "CONNECT" ? "https://\(e.host.contains(":") ? "[\(e.host)]" : e.host):\(e.port)/" : e.url
        var request: [String: Any] = [
            "method": e.method, "url": url, "httpVersion": e.httpVersion,
            "cookies": cookies(
                e.requestHeaders.filter { $0.name.lowercased() == "cookie" }.map(\.value), response: false),
            "headers": e.requestHeaders.map { ["name": $0.name, "value": $0.value] },
            "queryString": query(e.target),
            "headersSize": -1, "bodySize": e.requestBody.size,
        ]
        if e.requestBody.size > 0 || !e.requestBody.bytes.isEmpty {
            let mime = e.requestHeaders.value(of: "content-type") ?? "application/octet-stream"
            var post: [String: Any] = ["mimeType": mime]
            let (text, base64) = bodyText(e.requestBody.bytes)
            post["text"] = text
            if base64 { post["_encoding"] = "base64" }
            if mime.lowercased().contains("x-www-form-urlencoded"), !base64 { post["params"] = formParams(text) }
            if let comment = bodyComment(e.requestBody) { post["comment"] = comment }
            request["postData"] = post
        }
        return request
    }

    static func responseObject(_ e: Exchange) -> [String: Any] {
        let mime =
            e.responseHeaders.value(of: "content-type")
            ?? (e.responseBody.bytes.isEmpty ? "x-unknown" : "application/octet-stream")
        // HAR 1.2: content.size is the decoded length, compression the bytes the coding saved, bodySize
        // what crossed the wire.
        let body = e.responseBody
        let decodedSize = body.encoding == nil ? body.size : (body.decodedSize ?? body.size)
        var content: [String: Any] = ["size": decodedSize, "mimeType": mime]
        if body.encoding != nil, let decoded = body.decodedSize { content["compression"] = decoded - body.size }
        if !body.bytes.isEmpty {
            let (text, base64) = bodyText(body.bytes)
            content["text"] = text
            if base64 { content["encoding"] = "base64" }
        }
        if let comment = bodyComment(body) { content["comment"] = comment }
        return [
            "status": e.status ?? 0, "statusText": e.status.map(statusText) ?? "",
            "httpVersion": e.status == nil ? "" : e.httpVersion,
            "cookies": cookies(
                e.responseHeaders.filter { $0.name.lowercased() == "set-cookie" }.map(\.value), response: true),
            "headers": e.responseHeaders.map { ["name": $0.name, "value": $0.value] },
            "content": content,
            "redirectURL": e.responseHeaders.value(of: "location") ?? "",
            "headersSize": -1, "bodySize": e.responseBody.size,
        ]
    }

    /// authtap's own members: ids, roles, findings, capture-time results and TLS facts, which an import keeps.
    static func authtapObject(_ e: Exchange, transaction: Int?, findings: [Int]) -> [String: Any] {
        var authtap: [String: Any] = [
            "exchange": e.id ?? 0, "roles": e.roles.map(\.rawValue), "findings": findings,
            "connectionReused": e.connectionReused,
        ]
        if let transaction { authtap["transaction"] = transaction }
        // Capture-time results (S256 of the verifier, JWT signature verdicts): the raw values are gone,
        // so an import of this file keeps these instead of recomputing them.
        let derived = e.oauthParams.filter { $0.location == .derived }
        if !derived.isEmpty {
            authtap["derived"] = derived.map { p -> [String: Any] in
                var d: [String: Any] = ["name": p.name, "value": p.value]
                if let fp = p.fingerprint { d["fingerprint"] = fp }
                return d
            }
        }
        if let tls = e.clientTLS { authtap["clientTLS"] = tlsDict(tls) }
        if let tls = e.upstreamTLS { authtap["upstreamTLS"] = tlsDict(tls) }
        if let error = e.error { authtap["error"] = error.rawValue }
        if let reason = e.tlsFailure { authtap["tlsFailure"] = reason.rawValue }
        if e.insecureUpstream { authtap["insecureUpstream"] = true }
        return authtap
    }

    /// What a reader of the HAR should know about a recorded body: cut, not decoded, converted.
    static func bodyComment(_ body: CapturedBody) -> String? {
        var parts: [String] = []
        if let encoding = body.encoding { parts.append("decoded from \(encoding) (\(body.size) bytes on the wire)") }
        if body.truncated { parts.append("truncated: the first \(body.bytes.count) bytes of text recorded") }
        if let note = body.note { parts.append(note) }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    static func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

    static func bodyText(_ bytes: [UInt8]) -> (String, Bool) {
        if let s = String(validating: bytes, as: UTF8.self) { return (s, false) }
        return (Data(bytes).base64EncodedString(), true)
    }

    static func query(_ target: String) -> [[String: String]] {
        guard let q = target.firstIndex(of: "?") else { return [] }
        let rest = target[target.index(after: q)...].prefix { $0 != "#" }
        return formParams(String(rest)).map { ["name": $0["name"] ?? "", "value": $0["value"] ?? ""] }
    }

    static func formParams(_ text: String) -> [[String: String]] {
        text.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
            }
            return ["name": decode(parts[0]), "value": parts.count > 1 ? decode(parts[1]) : ""]
        }
    }

    static func cookies(_ values: [String], response: Bool) -> [[String: Any]] {
        var out: [[String: Any]] = []
        for value in values {
            let crumbs =
                response
                ? [Substring(value.split(separator: ";", maxSplits: 1).first ?? "")] : value.split(separator: ";")
            for crumb in crumbs {
                let trimmed = crumb.trimmingCharacters(in: .whitespaces)
                guard let eq = trimmed.firstIndex(of: "=") else { continue }
                var c: [String: Any] = [
                    "name": String(trimmed[..<eq]), "value": String(trimmed[trimmed.index(after: eq)...]),
                ]
                if response {
                    for attr in value.split(separator: ";").dropFirst() {
                        let a = attr.trimmingCharacters(in: .whitespaces)
                        let lower = a.lowercased()
                        if lower == "httponly" { c["httpOnly"] = true }
                        if lower == "secure" { c["secure"] = true }
                        if lower.hasPrefix("path=") { c["path"] = String(a.dropFirst(5)) }
                        if lower.hasPrefix("domain=") { c["domain"] = String(a.dropFirst(7)) }
                    }
                }
                out.append(c)
            }
        }
        return out
    }

    static func tlsDict(_ t: TLSFacts) -> [String: Any] {
        var d: [String: Any] = [:]
        if let v = t.version { d["version"] = v }
        if let v = t.cipher { d["cipher"] = v }
        if let v = t.alpn { d["alpn"] = v }
        if let v = t.sni { d["sni"] = v }
        if let v = t.verification { d["verification"] = v }
        if let c = t.peerCertificate {
            d["certificate"] = [
                "subject": c.subject, "issuer": c.issuer, "sans": c.sans, "notBefore": iso(c.notBefore),
                "notAfter": iso(c.notAfter),
            ]
        }
        return d
    }

    static func statusText(_ code: Int) -> String {
        let texts = [
            200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
            303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
            400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            407: "Proxy Authentication Required",
            409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        ]
        return texts[code] ?? ""
    }

    /// ISO 8601 with milliseconds and the UTC offset, as HAR wants.
    static func iso(_ date: Date) -> String { HARDate.string(date) }
}

/// One formatter each way for the whole run: creating one per entry dominated large exports and imports.
enum HARDate {
    private static let withFraction: Mutex<ISO8601DateFormatter> = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return Mutex(f)
    }()

    static func string(_ date: Date) -> String { withFraction.withLock { $0.string(from: date) } }

    /// RFC 3339 date-time, as HAR 1.2 requires (`2023-03-29T17:37:42.489-07:00`, `…Z`), read by hand: an
    /// ISO8601DateFormatter hands the text to ICU, which dies of a division trap on a long enough fraction
    /// (found by the HAR fuzz target). A fraction's digits past the microsecond are read and dropped.
    static func date(_ s: String) -> Date? {
        let b = Array(s.utf8)
        var i = 0
        func digits(_ count: Int) -> Int? {
            guard i + count <= b.count else { return nil }
            var v = 0
            for k in 0..<count {
                let d = b[i + k] &- UInt8(ascii: "0")
                guard d < 10 else { return nil }
                v = v * 10 + Int(d)
            }
            i += count
            return v
        }
        func expect(_ c: UInt8...) -> Bool {
            guard i < b.count, c.contains(b[i]) else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(UInt8(ascii: "-")), let month = digits(2), expect(UInt8(ascii: "-")),
            let day = digits(2), expect(UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")),
            let hour = digits(2), expect(UInt8(ascii: ":")), let minute = digits(2), expect(UInt8(ascii: ":")),
            let second = digits(2)
        else { return nil }
        var micros = 0
        if expect(UInt8(ascii: ".")) {
            var count = 0
            while i < b.count, b[i] &- UInt8(ascii: "0") < 10 {
                if count < 6 { micros = micros * 10 + Int(b[i] - UInt8(ascii: "0")) }
                count += 1
                i += 1
            }
            guard count > 0 else { return nil }
            for _ in min(count, 6)..<6 { micros *= 10 }
        }
        var offset = 0
        if expect(UInt8(ascii: "Z"), UInt8(ascii: "z")) {
            offset = 0
        } else if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = digits(2) else { return nil }
            _ = expect(UInt8(ascii: ":"))
            guard let om = digits(2), oh < 24, om < 60 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count,
            let utc = CivilDate.seconds(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        else { return nil }
        return Date(timeIntervalSince1970: Double(utc - offset) + Double(micros) / 1_000_000)
    }
}
