import AuthtapAnalyzer
import AuthtapModel
import AuthtapOAuth
import AuthtapStore
import Foundation

extension TUIApp {
    func renderDetail(_ buf: inout ScreenBuffer, id: Int64, row0: Int, height: Int) throws {
        let (exchange, findings) = try detail(id)
        var col = 1
        for (i, name) in Self.tabs.enumerated() {
            let label = " \(name)\(name == "Findings" && !findings.isEmpty ? " (\(findings.count))" : "") "
            col = buf.put(row0, col, label, i == detailTab ? .header : Style(bold: true)) + 1
        }
        guard let e = exchange else {
            buf.put(row0 + 2, 2, "Exchange #\(id) is not in the database.", .error)
            return
        }
        let lines = detailLines(e, findings: findings, width: buf.cols - 2)
        detailScroll = min(detailScroll, max(0, lines.count - (height - 2)))
        for (i, line) in lines.dropFirst(detailScroll).prefix(height - 2).enumerated() {
            drawMarked(&buf, row0 + 2 + i, 1, line.0, line.1)
        }
        if lines.count > height - 2 {
            buf.put(
                row0 + height - 1, buf.cols - 22,
                "lines \(detailScroll + 1)-\(min(lines.count, detailScroll + height - 2)) of \(lines.count)",
                Style(dim: true))
        }
    }

    /// Masked values are visibly marked: `[masked …]` segments are drawn in their own colour.
    func drawMarked(_ buf: inout ScreenBuffer, _ row: Int, _ col: Int, _ text: String, _ style: Style) {
        var rest = Substring(text)
        var c = col
        while let open = rest.range(of: "[masked ") {
            c = buf.put(row, c, String(rest[..<open.lowerBound]), style)
            let end = rest[open.lowerBound...].firstIndex(of: "]").map { rest.index(after: $0) } ?? rest.endIndex
            c = buf.put(row, c, String(rest[open.lowerBound..<end]), Style(bold: true, color: .magenta))
            rest = rest[end...]
        }
        buf.put(row, c, String(rest), style)
    }

    func detailLines(_ e: Exchange, findings: [FindingRow], width: Int) -> [(String, Style)] {
        // Every line quotes what a client or a server sent: escaped in full, so that a literal `\x1b` and a real
        // ESC never look alike.
        var text = DetailText(width: width, wrap: wrap)
        switch Self.tabs[detailTab] {
        case "Request":
            requestTab(e, into: &text)
        case "Response":
            responseTab(e, into: &text)
        case "OAuth":
            oauthTab(e, into: &text)
        case "JWT":
            jwtTab(e, into: &text)
        case "TLS":
            tlsTab(e, into: &text)
        default:
            findingsTab(findings, into: &text)
        }
        return text.lines
    }

    private func requestTab(_ e: Exchange, into text: inout DetailText) {
        text.add("\(e.method) \(e.url) \(e.httpVersion)", Style(bold: true))
        for h in e.requestHeaders { text.add("\(h.name): \(h.value)") }
        text.add("")
        body(e.requestBody, headers: e.requestHeaders, add: { text.add($0, $1) })
    }

    private func responseTab(_ e: Exchange, into text: inout DetailText) {
        if let status = e.status {
            text.add("HTTP/1.1 \(status)", TUIApp.statusStyle(e.status, e.error?.rawValue))
        } else {
            text.add("no response", .error)
        }
        if let error = e.error {
            text.add(
                "authtap: \(error.rawValue)\(e.tlsFailure.map { " (\($0.rawValue))" } ?? ""): "
                    + (e.errorDetail ?? error.sentence),
                .error)
        }
        for h in e.responseHeaders { text.add("\(h.name): \(h.value)") }
        text.add("")
        body(e.responseBody, headers: e.responseHeaders, add: { text.add($0, $1) })
    }

    private func oauthTab(_ e: Exchange, into text: inout DetailText) {
        text.add("roles: " + (e.roles.isEmpty ? "none" : e.roles.map(\.rawValue).joined(separator: ", ")), .key)
        text.add("")
        for p in e.oauthParams {
            text.add(
                fit(p.location.rawValue, 30) + " " + fit(p.name, 22) + " " + p.value
                    + (p.fingerprint.map { "  fp=\($0)" } ?? ""))
        }
        if e.oauthParams.isEmpty { text.add("no OAuth parameters") }
    }

    private func jwtTab(_ e: Exchange, into text: inout DetailText) {
        let tokens = jwts(e)
        if tokens.isEmpty { text.add("no JWT in this exchange") }
        for (name, token) in tokens {
            text.add(name, Style(bold: true))
            guard let decoded = JWT.decode(token) else { text.add("  (not decodable)", .warning); continue }
            text.add("  header: " + compact(decoded.header))
            for (k, v) in decoded.claims.sorted(by: { $0.key < $1.key }) {
                var line = "  \(k): \(v)"
                if ["exp", "iat", "nbf", "auth_time"].contains(k), let n = (v as? NSNumber)?.doubleValue,
                    Self.plausibleEpoch(n)
                {
                    let date = Date(timeIntervalSince1970: n)
                    line +=
                        "  = " + TUIApp.time(date, date: true) + " (" + relative(date, to: e.timings.start) + ")"
                }
                text.add(line)
            }
            text.add("  signature: " + (token.split(separator: ".").last.map(String.init) ?? ""), .masked)
            text.add("")
        }
    }

    private func tlsTab(_ e: Exchange, into text: inout DetailText) {
        for (leg, facts) in [("client ↔ authtap", e.clientTLS), ("authtap ↔ upstream", e.upstreamTLS)] {
            text.add(leg, Style(bold: true))
            guard let t = facts else { text.add("  (none: plain HTTP or not reached)"); continue }
            text.add(
                "  version \(t.version ?? "?")  cipher \(t.cipher ?? "?")  ALPN \(t.alpn ?? "-")  SNI \(t.sni ?? "-")"
            )
            if let v = t.verification { text.add("  verification: \(v)", v == "verified" ? .ok : .error) }
            if let c = t.peerCertificate {
                text.add("  subject \(c.subject)")
                text.add("  issuer  \(c.issuer)")
                text.add("  SANs    \(c.sans.joined(separator: ", "))")
                text.add("  valid   \(TUIApp.time(c.notBefore, date: true)) → \(TUIApp.time(c.notAfter, date: true))")
            }
        }
        if e.insecureUpstream { text.add("upstream verification was off (--insecure-upstream)", .warning) }
    }

    private func findingsTab(_ findings: [FindingRow], into text: inout DetailText) {
        if findings.isEmpty { text.add("No findings on this exchange.", .ok) }
        for f in findings {
            text.add("\(f.severity.uppercased()) \(f.rule): \(f.title)", TUIApp.severityStyle(f.severity))
            text.add("  " + f.explanation)
            text.add("  Fix: " + f.fix, .ok)
            text.add("")
        }
    }

    func body(_ b: CapturedBody, headers: [HeaderField], add: (String, Style) -> Void) {
        if let encoding = b.encoding {
            let decoded = b.decodedSize.map { ", \($0) decoded" } ?? ""
            add("(\(encoding): \(b.size) bytes on the wire\(decoded))", Style(dim: true))
        }
        if let note = b.note { add("(\(note))", b.bytes.isEmpty ? .warning : Style(dim: true)) }
        guard !b.bytes.isEmpty else {
            if b.note == nil { add(b.size == 0 ? "(no body)" : "(\(b.size) bytes, not recorded)", Style(dim: true)) }
            return
        }
        let type = (headers.value(of: "content-type") ?? "").lowercased()
        if b.truncated { add("(first \(b.bytes.count) bytes of text; the body is longer)", .warning) }
        if case .success(let json) = JSONValue.parse(b.bytes) {
            for line in pretty(json, indent: 0) { add(line, .plain) }
            return
        }
        let text = String(decoding: b.bytes, as: UTF8.self)
        if type.contains("html") || text.hasPrefix("<") {
            if let open = text.range(of: "<title", options: .caseInsensitive),
                let gt = text[open.upperBound...].firstIndex(of: ">"),
                let close = text[gt...].range(of: "</title>", options: .caseInsensitive)
            {
                add(
                    "HTML page: "
                        + text[text.index(after: gt)..<close.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines),
                    Style(bold: true))
            }
        }
        if type.contains("x-www-form-urlencoded") {
            for pair in text.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                add(
                    "  " + FormCoding.decode(parts[0]) + (parts.count > 1 ? " = " + FormCoding.decode(parts[1]) : ""),
                    .plain)
            }
            return
        }
        if String(validating: b.bytes, as: UTF8.self) == nil {
            add("(\(b.bytes.count) bytes of binary data)", Style(dim: true))
            return
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) { add(String(line), .plain) }
    }

    func pretty(_ v: JSONValue, indent: Int) -> [String] {
        let pad = String(repeating: "  ", count: indent)
        switch v {
        case .object(let members):
            if members.isEmpty { return ["{}"] }
            var out = ["{"]
            for (i, (k, value)) in members.enumerated() {
                let inner = pretty(value, indent: indent + 1)
                let comma = i < members.count - 1 ? "," : ""
                out.append(pad + "  \"\(k)\": " + (inner.first ?? "") + (inner.count == 1 ? comma : ""))
                if inner.count > 1 {
                    out += inner.dropFirst().dropLast().map { $0 }; out.append((inner.last ?? "") + comma)
                }
            }
            out.append(pad + "}")
            return out
        case .array(let items):
            if items.isEmpty { return ["[]"] }
            var out = ["["]
            for (i, item) in items.enumerated() {
                let inner = pretty(item, indent: indent + 1)
                let comma = i < items.count - 1 ? "," : ""
                out.append(pad + "  " + (inner.first ?? "") + (inner.count == 1 ? comma : ""))
                if inner.count > 1 {
                    out += inner.dropFirst().dropLast().map { $0 }; out.append((inner.last ?? "") + comma)
                }
            }
            out.append(pad + "]")
            return out
        case .string(let s): return ["\"\(s)\""]
        default: return [v.text]
        }
    }

    func jwts(_ e: Exchange) -> [(String, String)] {
        var out: [(String, String)] = []
        for h in e.requestHeaders where h.name.lowercased() == "authorization" {
            let parts = h.value.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[1].hasPrefix("eyJ") {
                out.append(("Authorization bearer token", String(parts[1])))
            }
        }
        for (where_, b) in [("request", e.requestBody), ("response", e.responseBody)] {
            if case .success(let json) = JSONValue.parse(b.bytes), case .object(let members) = json {
                for (k, v) in members {
                    if let s = v.string, s.hasPrefix("eyJ"), s.split(separator: ".").count >= 2 {
                        out.append(("\(where_) \(k)", s))
                    }
                }
            }
        }
        return out
    }

    func compact(_ d: [String: Any]) -> String {
        d.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    /// Seconds since 1970 that a date formatter and `relative` handle: year 0 to 9999. A claim is the token
    /// issuer's to choose, `1e300` included.
    static func plausibleEpoch(_ n: Double) -> Bool { n.isFinite && abs(n) < 253_402_300_800 }

    func relative(_ date: Date, to reference: Date) -> String {
        let seconds = date.timeIntervalSince(reference)
        guard seconds.isFinite, abs(seconds) < 1e15 else { return "far off" }
        let s = Int(saturating: seconds)
        let a = abs(s)
        let text = a < 120 ? "\(a) s" : a < 7200 ? "\(a / 60) min" : a < 172_800 ? "\(a / 3600) h" : "\(a / 86400) days"
        return s >= 0 ? "in \(text)" : "\(text) ago"
    }
}

/// The detail view's lines for one tab: each added line escaped in full, then wrapped to the width.
struct DetailText {
    let width: Int
    let wrap: (String, Int) -> [String]
    var lines: [(String, Style)] = []

    mutating func add(_ s: String, _ style: Style = .plain) {
        for piece in wrap(TerminalText.escape(s), width) { lines.append((piece, style)) }
    }
}
