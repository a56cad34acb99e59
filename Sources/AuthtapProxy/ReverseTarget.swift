import AuthtapModel

/// One reverse listener (`--reverse URL[@HOST:PORT]`): every request it gets goes to `URL`'s origin, for apps
/// that ignore HTTPS_PROXY and are configured with authtap's URL instead of the server's.
public struct ReverseTarget: Sendable, Equatable {
    /// The upstream URL as given.
    public var url: String
    public var scheme: Scheme
    public var host: String
    public var port: Int
    /// The URL's path without its trailing slash ("" for none): prepended to every request's path.
    public var pathPrefix: String
    /// Where this listener binds; `nil` takes `--listen`.
    public var listenHost: String?
    public var listenPort: Int?
    /// Whether the upstream's absolute URLs in responses are rewritten to this listener's (`--rewrite-urls`).
    public var rewriteURLs = false

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads `https://host[:port][/path][@listenHost:listenPort]`. The port after `@` may be 0 (any free port).
    public static func parse(_ spec: String) throws -> ReverseTarget {
        var urlText = spec
        var listen: (String, Int)?
        // The URL itself never holds an `@` (userinfo is refused below), so the last one starts the listen address.
        if let at = spec.lastIndex(of: "@") {
            urlText = String(spec[..<at])
            let address = String(spec[spec.index(after: at)...])
            guard let parsed = parseListen(address) else {
                throw ParseError(description: "--reverse \(spec): \(address) is not HOST:PORT")
            }
            listen = parsed
        }
        guard let target = RequestTarget.parseAbsolute(urlText) else {
            throw ParseError(description: "--reverse \(spec): \(urlText) is not an http:// or https:// URL")
        }
        guard !urlText.contains("@") else {
            throw ParseError(description: "--reverse \(spec): the upstream URL takes no user name or password")
        }
        guard !urlText.contains("?"), !urlText.contains("#") else {
            throw ParseError(description: "--reverse \(spec): the upstream URL takes no query or fragment")
        }
        var prefix = target.path
        while prefix.hasSuffix("/") { prefix.removeLast() }
        return ReverseTarget(
            url: urlText, scheme: target.scheme, host: target.host, port: target.port, pathPrefix: prefix,
            listenHost: listen?.0, listenPort: listen?.1)
    }

    /// `HOST:PORT` or `[V6]:PORT`, port 0...65535.
    static func parseListen(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }

    /// The upstream's origin as servers spell it in absolute URLs: the port only when it is not the default.
    public var origin: String {
        let defaultPort = scheme == .https ? 443 : 80
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "\(scheme.rawValue)://\(shownHost)\(port == defaultPort ? "" : ":\(port)")"
    }
}
