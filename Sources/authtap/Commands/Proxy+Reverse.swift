import ArgumentParser
import AuthtapCA
import AuthtapModel
import AuthtapProxy
import AuthtapStore
import Foundation

/// The protocol options of `authtap proxy`: HTTP/2 and the reverse listeners.
struct ProtocolOptions: ParsableArguments {
    enum Switch: String, ExpressibleByArgument, CaseIterable {
        case on, off
    }

    @Option(
        help: """
            HTTP/2 on both legs (on, the default, or off): each leg offers h2 in ALPN and speaks what its peer \
            chose, translating between the two.
            """)
    var http2: Switch = .on

    @Option(
        help: ArgumentHelp(
            """
            Reverse mode, for apps that ignore HTTPS_PROXY: serve TLS (a leaf for the name asked for, signed by the \
            authtap CA) and forward every request to URL. Repeatable; each URL@HOST:PORT gets its own listener, \
            and one URL without @ takes --listen. No forward listener runs.
            """, valueName: "URL[@HOST:PORT]"))
    var reverse: [String] = []

    @Flag(
        name: .customLong("rewrite-urls"),
        help: """
            With --reverse: rewrite the upstream's absolute URLs to authtap's in Location headers and JSON bodies \
            (OIDC discovery, JWKS), so that a client that follows them stays on the proxy. Each rewrite is noted \
            on the recorded exchange, which keeps what the server sent.
            """)
    var rewriteURLs = false

    /// The reverse targets, checked: at most one takes --listen, and every listener is on loopback unless
    /// `allowRemote`.
    func targets(allowRemote: Bool) throws -> [ReverseTarget] {
        if rewriteURLs && reverse.isEmpty { throw ValidationError("--rewrite-urls needs --reverse URL") }
        var targets: [ReverseTarget] = []
        for spec in reverse {
            do {
                var target = try ReverseTarget.parse(spec)
                target.rewriteURLs = rewriteURLs
                targets.append(target)
            } catch let error as ReverseTarget.ParseError {
                throw ValidationError(error.description)
            }
        }
        if targets.filter({ $0.listenPort == nil }).count > 1 {
            throw ValidationError("only one --reverse URL may take --listen; give the others URL@HOST:PORT")
        }
        for target in targets {
            if let host = target.listenHost, !allowRemote, !ProxyConfiguration.isLoopback(host) {
                throw ValidationError(
                    "refusing to listen on \(host) for --reverse \(target.url): it is not a loopback address")
            }
        }
        return targets
    }
}

extension Proxy {
    /// Binds the reverse listeners, records them on the session and returns the lines that announce them, with
    /// the first listener's port.
    func startReverse(
        _ server: ProxyServer, database: AppDatabase, sessionID: Int64
    ) async throws -> (String, Int) {
        let bound: [(target: ReverseTarget, host: String, port: Int)]
        do {
            bound = try await server.startReverse()
        } catch {
            throw ValidationError("cannot listen for --reverse: \(TerminalText.escape("\(error)"))")
        }
        var lines: [String] = []
        for (target, host, port) in bound {
            lines.append("https://\(host.contains(":") ? "[\(host)]" : host):\(port) -> \(target.url)")
        }
        try database.setReverse(sessionID, upstreams: lines)
        if let first = bound.first {
            let host = first.host.contains(":") ? "[\(first.host)]" : first.host
            try database.setListen(sessionID, listen: "\(host):\(first.port)")
        }
        let announced = bound.map { target, host, port in
            "authtap reverse proxy on https://\(host.contains(":") ? "[\(host)]" : host):\(port) for \(target.url)\n"
        }.joined()
        return (announced, bound.first?.port ?? 0)
    }

    /// After the listeners: the CA the app must trust, the database, and how to point an app at a listener.
    func reverseBanner(certs: CertsDirectory, sessionID: Int64) -> String {
        let ca = absolute(certs.caCertificatePath)
        var banner = "CA certificate: \(ca)\n"
        banner += "Capture database: \(absolute(paths.db)) (session \(sessionID))\n"
        banner += "Point the app at a listener above (as its issuer, or its token and userinfo endpoints), "
        banner += "and have it trust the CA:\n"
        banner += "  export NODE_EXTRA_CA_CERTS=\(ca) SSL_CERT_FILE=\(absolute(certs.path))/ca-bundle.pem\n"
        if protocols.rewriteURLs {
            banner += "Upstream URLs in Location headers and JSON bodies are rewritten to the listener's "
            banner += "(--rewrite-urls)\n"
        }
        return banner
    }
}
