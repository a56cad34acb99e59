import AuthtapModel
import AuthtapStore
import Foundation

/// One line per session in `authtap sessions`.
enum SessionLine {
    static func format(
        _ s: SessionRecord, counts: (transactions: Int, errors: Int, warnings: Int, info: Int)?
    ) -> String {
        let end = s.endedAt.map { iso($0) } ?? "running or interrupted"
        var line =
            "#\(s.id ?? 0)  \(iso(s.startedAt)) → \(end)  \(s.recorded) exchanges  \(s.dropped) dropped  "
            + "\(TerminalText.escape(s.listen ?? ""))  v\(TerminalText.escape(s.version))"
        if s.mode == "reverse" {
            line +=
                "  reverse: " + TerminalText.escape((s.upstreams ?? "").split(separator: "\n").joined(separator: ", "))
        }
        if let c = counts {
            line += "  \(c.transactions) transactions, \(c.errors) errors, \(c.warnings) warnings"
        } else {
            line += "  (not analyzed)"
        }
        return line
    }
}
