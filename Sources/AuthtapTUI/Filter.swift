import AuthtapStore

/// The `/` filter: plain words plus `status:4xx`, `status:none`, `host:`, `role:`, `rule:`,
/// `severity:`, `error:`. It parses straight into the store's `BrowseFilter`, which runs it in SQL.
public enum Filter {
    public struct ParseError: Error, Equatable, Sendable {
        public var message: String
    }

    public static func parse(_ text: String) -> Result<BrowseFilter, ParseError> {
        var f = BrowseFilter()
        for token in text.split(separator: " ", omittingEmptySubsequences: true) {
            guard let colon = token.firstIndex(of: ":"), colon != token.startIndex else {
                f.words.append(String(token))
                continue
            }
            let key = token[..<colon].lowercased()
            let value = String(token[token.index(after: colon)...])
            guard !value.isEmpty else { return .failure(ParseError(message: "\(key): needs a value")) }
            switch key {
            case "status":
                let v = value.lowercased()
                if v == "none" || v == "-" || v == "failed" {
                    f.statusNone = true
                } else if v.count == 3, v.hasSuffix("xx"), let d = Int(v.prefix(1)), (1...5).contains(d) {
                    f.statusClass = d
                } else if let n = Int(v), (100...599).contains(n) {
                    f.statusExact = n
                } else {
                    return .failure(ParseError(message: "status: takes 200, 4xx or none"))
                }
            case "host": f.host = value.lowercased()
            case "role": f.role = value.lowercased()
            case "rule": f.rule = value.lowercased()
            case "severity":
                let v = value.lowercased()
                guard ["error", "warning", "info"].contains(v) else {
                    return .failure(ParseError(message: "severity: takes error, warning or info"))
                }
                f.severity = v
            case "error": f.error = value.lowercased()
            default:
                return .failure(
                    ParseError(message: "unknown filter \(key): (status, host, role, rule, severity, error)"))
            }
        }
        return .success(f)
    }
}
