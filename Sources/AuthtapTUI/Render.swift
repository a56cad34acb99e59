import AuthtapModel
import AuthtapOAuth
import AuthtapStore
import Foundation
import Synchronization

extension TUIApp {
    /// Draws the whole screen: a title bar, the current view, and a status line.
    public func render(_ buf: inout ScreenBuffer) {
        buf.clear()
        bodyHeight = max(1, buf.rows - 3)
        do {
            try renderBody(&buf, top: 2, height: bodyHeight)
        } catch {
            buf.put(2, 1, "error: \(error)", .error)
        }
        buf.fill(0, .header)
        buf.put(0, 0, " " + title(), .header)
        let right = (follow ? "[follow] " : "") + (filterText.isEmpty ? "" : "filter: \(filterText) ")
        if !right.isEmpty {
            buf.put(
                0, max(0, buf.cols - ScreenBuffer.width(right) - 1), right,
                Style(bold: true, reverse: true, color: .yellow))
        }
        let last = buf.rows - 1
        if let text = editingFilter {
            buf.put(last, 0, "/" + text + "▏", .key)
            if let message {
                buf.put(last, buf.cols / 2, message, .error)
            } else {
                buf.put(
                    last, buf.cols / 2, "status:4xx host: role: rule: severity: error:  Enter apply · Esc cancel",
                    Style(dim: true))
            }
        } else if let message {
            buf.put(
                last, 0, message, message.hasPrefix("filter:") || message.hasPrefix("export failed") ? .error : .warning
            )
        } else {
            buf.put(last, 0, footer(), Style(dim: true))
        }
        if showHelp { renderHelp(&buf) }
    }

    func title() -> String {
        let s = session.map { "session \($0)" } ?? "authtap"
        switch current {
        case .sessions: return "authtap › Sessions"
        case .transactions: return "authtap › \(s) › Transactions"
        case .timeline(let t): return "authtap › \(s) › Transaction \(t.number)"
        case .exchanges: return "authtap › \(s) › Exchanges (\((try? exchanges().total()) ?? 0))"
        case .detail(let id): return "authtap › \(s) › Exchange #\(id)"
        case .findings: return "authtap › \(s) › Findings"
        case .finding(let f): return "authtap › \(s) › Finding \(f.rule)"
        }
    }

    func footer() -> String {
        switch current {
        case .detail: return "Tab next tab · j/k scroll · q back · ? help"
        default:
            return "↑↓/jk move · Enter open · / filter · f follow · 1-4 views · e export · ? help · q "
                + (stack.count <= 1 ? "quit" : "back")
        }
    }

    func renderBody(_ buf: inout ScreenBuffer, top row0: Int, height: Int) throws {
        switch current {
        case .sessions:
            try renderSessions(&buf, row0: row0, height: height)
        case .transactions:
            try renderTransactions(&buf, row0: row0, height: height)
        case .timeline(let t):
            try renderTimeline(&buf, row0: row0, height: height, t)
        case .exchanges:
            try renderExchanges(&buf, row0: row0, height: height)
        case .detail(let id):
            try renderDetail(&buf, id: id, row0: row0 - 1, height: height + 1)
        case .findings:
            try renderFindings(&buf, row0: row0, height: height)
        case .finding(let f):
            try renderFinding(&buf, row0: row0, height: height, f)
        }
    }

    private func renderSessions(_ buf: inout ScreenBuffer, row0: Int, height: Int) throws {
        let rows = try sessions()
        header(&buf, row0 - 1, "  #  started               duration  exchanges  transactions  findings")
        list(&buf, row0, height, count: rows.count) { i, w in
            let s = rows[i]
            let duration = s.endedAt.map { String(format: "%.0fs", $0.timeIntervalSince(s.startedAt)) } ?? "running"
            let findings =
                s.errors + s.warnings + s.info == 0
                ? "none" : "\(s.errors) errors, \(s.warnings) warnings, \(s.info) info"
            let text =
                fit("\(s.id)", 4) + " " + fit(Self.time(s.startedAt, date: true), 20) + "  " + fit(duration, 8)
                + "  " + fit("\(s.exchanges)", 9) + "  "
                + fit("\(s.transactions)", 12) + "  " + findings
            return [(text, s.errors > 0 ? Style.error : s.warnings > 0 ? .warning : .plain)]
        }
        if rows.isEmpty { buf.put(row0, 2, "No sessions yet: run `authtap proxy`, then come back.") }
    }

    private func renderTransactions(_ buf: inout ScreenBuffer, row0: Int, height: Int) throws {
        header(
            &buf, row0 - 1,
            "   #  client_id             server                      outcome                 findings")
        let total = try pagedList(&buf, row0, height, try transactions()) { t in
            let text =
                fit("\(t.number)", 4) + "  " + fit(t.clientID ?? "?", 20) + "  " + fit(t.serverHost ?? "?", 26)
                + "  " + fit(t.outcome, 22) + "  "
            let style: Style = t.outcome.hasPrefix("failed") ? .error : t.outcome == "ok" ? .ok : .plain
            return [(text, style)] + Self.badgeSegments(t.findings)
        }
        if total == 0 {
            buf.put(
                row0, 2,
                session == nil
                    ? "Pick a session first (1)." : "No OAuth transactions in this session (run `authtap analyze`)."
            )
        }
    }

    private func renderTimeline(_ buf: inout ScreenBuffer, row0: Int, height: Int, _ t: TransactionRow) throws {
        let members = try timeline(t)
        buf.put(
            row0 - 1, 1,
            "client_id=\(t.clientID ?? "?")  server=\(t.serverHost ?? "?")  \(t.grantType ?? "")  → \(t.outcome)",
            .key)
        list(&buf, row0, height, count: members.count) { i, _ in
            let (leg, e) = members[i]
            let offset = e.startedAt.timeIntervalSince(members[0].row.startedAt)
            let status = e.status.map(String.init) ?? (e.error ?? "---")
            let text =
                String(format: "+%8.3fs  ", offset) + fit("#\(e.id)", 7) + " " + fit(leg, 22) + " "
                + fit(e.method, 6) + " " + fit(e.host + Self.path(e.target), 50) + "  "
            return [(text, .plain), (status, Self.statusStyle(e.status, e.error))]
        }
    }

    private func renderExchanges(_ buf: inout ScreenBuffer, row0: Int, height: Int) throws {
        let count = try exchanges().total()
        header(
            &buf, row0 - 1,
            " time          method host                 path                       status    ms  role             "
                + "error / findings"
        )
        let visible = height
        adjustTop(count: count, height: visible)
        let rows = try exchanges().rows(offset: top[top.count - 1], count: visible)
        for (k, e) in rows.enumerated() {
            let index = top[top.count - 1] + k
            let row = row0 + k
            let status = e.status.map(String.init) ?? "---"
            var col = buf.put(
                row, 0,
                " " + fit(Self.time(e.startedAt, date: false), 13) + " " + fit(e.method, 6) + " " + fit(e.host, 20)
                    + " " + fit(Self.path(e.target), 26) + " ")
            col = buf.put(row, col, fit(status, 6), Self.statusStyle(e.status, e.error))
            col = buf.put(row, col, fit(e.durationMs.map { String(format: "%5.0f", $0) } ?? "    -", 6) + "  ")
            col = buf.put(row, col, fit(e.roles.joined(separator: ","), 16) + " ", .key)
            if let err = e.error {
                col = buf.put(row, col, "!" + err + (e.tlsFailure.map { "(\($0))" } ?? "") + " ", .error)
            }
            for (text, style) in Self.badgeSegments(e.findings) { col = buf.put(row, col, text, style) }
            if index == cursor { buf.fill(row, .selected) }
        }
        if count == 0 {
            buf.put(
                row0, 2,
                filterText.isEmpty ? "No exchanges in this session yet." : "No exchange matches the filter.")
        }
    }

    private func renderFindings(_ buf: inout ScreenBuffer, row0: Int, height: Int) throws {
        header(&buf, row0 - 1, " severity  rule                     title")
        let total = try pagedList(&buf, row0, height, try findings()) { f in
            [
                (" " + fit(f.severity.uppercased(), 8) + "  ", Self.severityStyle(f.severity)),
                (fit(f.rule, 24) + " " + f.title, .plain),
            ]
        }
        if total == 0 { buf.put(row0, 2, "No findings.", .ok) }
    }

    private func renderFinding(_ buf: inout ScreenBuffer, row0: Int, height: Int, _ f: FindingRow) throws {
        // Titles, explanations and evidence quote servers: escaped in full before wrapping.
        let t: (String) -> String = { TerminalText.escape($0) }
        let heading = f.severity.uppercased() + "  " + t(f.rule) + ": " + t(f.title)
        var lines: [(String, Style)] = [(heading, Self.severityStyle(f.severity)), ("", .plain)]
        lines += wrap("Why: " + t(f.explanation), buf.cols - 2).map { ($0, .plain) }
        lines.append(("", .plain))
        lines.append(("Evidence:", .key))
        for (k, v) in f.evidence.sorted(by: { $0.key < $1.key }) {
            lines += wrap("  \(t(k)): \(t(v))", buf.cols - 2).map { ($0, Self.maskedStyle($0)) }
        }
        lines.append(("", .plain))
        lines += wrap("Fix: " + t(f.fix), buf.cols - 2).map { ($0, .ok) }
        lines.append(("", .plain))
        lines.append(("Exchanges (Enter opens):", .key))
        let fixed = lines.count
        for (i, row) in lines.prefix(max(0, height - 1)).enumerated() { buf.put(row0 - 1 + i, 1, row.0, row.1) }
        let start = row0 - 1 + min(fixed, height - 1)
        for (i, id) in f.exchanges.enumerated() where start + i < row0 + height - 1 {
            buf.put(start + i, 3, "#\(id)", i == cursor ? .selected : .plain)
        }
    }

    func adjustTop(count: Int, height: Int) {
        var t = top[top.count - 1]
        if cursor < t { t = cursor }
        if cursor >= t + height { t = cursor - height + 1 }
        t = max(0, min(t, max(0, count - height)))
        top[top.count - 1] = t
    }

    func header(_ buf: inout ScreenBuffer, _ row: Int, _ text: String) {
        buf.put(row, 0, text, Style(bold: true))
    }

    /// A list read through a pager: only the rows on screen are fetched. Returns the total.
    func pagedList<Row>(
        _ buf: inout ScreenBuffer, _ row0: Int, _ height: Int, _ pager: Pager<Row>, _ line: (Row) -> [(String, Style)]
    ) throws -> Int {
        let total = try pager.total()
        adjustTop(count: total, height: height)
        let first = top[top.count - 1]
        let rows = try pager.rows(offset: first, count: height)
        list(&buf, row0, height, count: total) { i, _ in i - first < rows.count ? line(rows[i - first]) : [] }
        return total
    }

    /// A scrolling list with a selected row; `line` gives the styled segments of item i.
    func list(
        _ buf: inout ScreenBuffer, _ row0: Int, _ height: Int, count: Int, _ line: (Int, Int) -> [(String, Style)]
    ) {
        adjustTop(count: count, height: height)
        let t = top[top.count - 1]
        for k in 0..<min(height, max(0, count - t)) {
            var col = 1
            for (text, style) in line(t + k, buf.cols) { col = buf.put(row0 + k, col, text, style) }
            if t + k == cursor { buf.fill(row0 + k, .selected) }
        }
    }

    func wrap(_ text: String, _ width: Int) -> [String] {
        var out: [String] = []
        for para in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = ""
            for word in para.split(separator: " ", omittingEmptySubsequences: false) {
                if ScreenBuffer.width(line) + word.count + 1 > width, !line.isEmpty {
                    out.append(line)
                    line = "  "
                }
                line += (line.isEmpty || line == "  " ? "" : " ") + word
            }
            out.append(line)
        }
        return out
    }

    func renderHelp(_ buf: inout ScreenBuffer) {
        let lines = [
            "Keys",
            "  ↑ ↓  j k      move              PgUp PgDn     page",
            "  g G           first / last      Enter         open",
            "  Esc  q        back (q on the top view quits)",
            "  Tab           next tab in an exchange (Shift-Tab: previous)",
            "  /             filter: words, status:4xx status:none host: role:token",
            "                rule:code-reuse severity:error error:tls",
            "  f             follow mode: new rows appear as they are written",
            "  1 2 3 4       sessions, transactions, exchanges, findings",
            "  e             export the session (or the transaction on screen) to HAR",
            "  ?             this help (Esc closes it)",
        ]
        let width = min(buf.cols - 2, 76)
        let left = max(0, (buf.cols - width) / 2)
        let top = max(1, (buf.rows - lines.count - 2) / 2)
        for r in 0..<(lines.count + 2) {
            buf.put(top + r, left, String(repeating: " ", count: width), .selected)
        }
        for (i, l) in lines.enumerated() {
            buf.put(
                top + 1 + i, left + 2, l, i == 0 ? Style(bold: true, reverse: true) : .selected, maxWidth: width - 4)
        }
    }

    // MARK: formatting

    /// Two formatters for the process, not one per row drawn.
    private static let formatters: Mutex<(dateTime: DateFormatter, time: DateFormatter)> = {
        let dateTime = DateFormatter()
        dateTime.dateFormat = "yyyy-MM-dd HH:mm:ss"
        let time = DateFormatter()
        time.dateFormat = "HH:mm:ss.SSS"
        return Mutex((dateTime, time))
    }()

    static func time(_ d: Date, date: Bool) -> String {
        formatters.withLock { (date ? $0.dateTime : $0.time).string(from: d) }
    }

    static func path(_ target: String) -> String { String(target.prefix { $0 != "?" && $0 != "#" }) }

    static func statusStyle(_ status: Int?, _ error: String?) -> Style {
        if error != nil || status == nil { return .error }
        if let s = status, s >= 500 { return .error }
        if let s = status, s >= 400 { return .warning }
        return .ok
    }

    static func severityStyle(_ s: String) -> Style {
        s == "error" ? .error : s == "warning" ? .warning : Style(color: .cyan)
    }

    static func badgeSegments(_ findings: [(rule: String, severity: String)]) -> [(String, Style)] {
        findings.map { ("[\($0.rule)] ", severityStyle($0.severity)) }
    }

    static func maskedStyle(_ line: String) -> Style { line.contains("[masked ") ? .masked : .plain }
}
