import AuthtapModel

/// Where a request goes, read from its request line: absolute-form URIs and CONNECT authorities.
enum RequestTarget {
    /// `http://host[:port]/path?query` → parts; `https://` too (authtap then speaks TLS upstream).
    static func parseAbsolute(_ uri: String) -> (scheme: Scheme, host: String, port: Int, path: String)? {
        let lower = uri.lowercased()
        let scheme: Scheme
        let rest: Substring
        if lower.hasPrefix("http://") {
            scheme = .http
            rest = uri.dropFirst(7)
        } else if lower.hasPrefix("https://") {
            scheme = .https
            rest = uri.dropFirst(8)
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var path = String(rest[authorityEnd...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        let defaultPort = scheme == .https ? 443 : 80
        guard let (host, port) = parseAuthority(String(authority), defaultPort: defaultPort) else { return nil }
        return (scheme, host, port, path)
    }

    /// `host:port`, `[v6]:port`; `defaultPort` when the port may be left out.
    static func parseAuthority(_ text: String, defaultPort: Int?) -> (String, Int)? {
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { return nil }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = Substring(text)
        }
        let port: Int
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { return nil }
            port = p
        } else {
            guard let defaultPort else { return nil }
            port = defaultPort
        }
        guard !host.isEmpty, host.count <= 253,
            host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" || $0 == ":" }),
            host.unicodeScalars.allSatisfy({ $0.isASCII })
        else { return nil }
        return (String(host), port)
    }
}
