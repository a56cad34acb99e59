import ArgumentParser
import AuthtapCA
import AuthtapModel
import AuthtapOAuth
import AuthtapProxy
import AuthtapStore
import Foundation

let authtapVersion = "0.1.0"

@main
struct Authtap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authtap",
        abstract: "A debugging proxy for OAuth 2.0 / OpenID Connect: records every exchange with its secrets masked, explains why a sign-in failed, and catches TLS handshake failures in packets.",
        version: authtapVersion,
        subcommands: [
            Proxy.self, Env.self, Sessions.self, Exchanges.self, Analyze.self, Rules.self, Capture.self,
            Handshakes.self, TUI.self, Export.self, Import.self, Audit.self, Generate.self, BenchRecord.self,
        ],
        defaultSubcommand: Proxy.self
    )

    /// Everything authtap writes is the user's traffic or a key to it, so it is private to the owner whatever
    /// umask the shell has: this covers the files that libraries create for us (SQLite's -wal and -shm,
    /// libpcap's dump), and the folders; the creators that are ours also set 0600 explicitly.
    static func main() async {
        umask(0o077)
        CrashGuard.install(version: authtapVersion)
        await main(nil)
    }
}

struct CommonPaths: ParsableArguments {
    @Option(help: "Directory of the local CA, the fingerprint key and the trust bundle.")
    var certs: String = "certs"

    @Option(help: "The capture database (SQLite, WAL).")
    var db: String = "Captures/authtap.sqlite"
}

struct ListenOption: ParsableArguments {
    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen: String = "127.0.0.1:8080"

    func parsed() throws -> (String, Int) {
        var text = listen
        var host = "127.0.0.1"
        if text.hasPrefix("[") , let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            text = String(text[text.index(after: close)...])
            guard text.hasPrefix(":"), let port = Int(text.dropFirst()), (0...65535).contains(port) else {
                throw ValidationError("--listen must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
            }
            return (host, port)
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
        }
        host = String(text[..<colon])
        if host.isEmpty { host = "127.0.0.1" }
        return (host, port)
    }
}

/// The lines that point common clients at authtap.
func clientSetupLines(proxyURL: String, certs: CertsDirectory, export: Bool) -> [String] {
    let ca = absolute(certs.caCertificatePath)
    let bundle = absolute(certs.bundlePath)
    let p = export ? "export " : "  export "
    return [
        "\(p)HTTPS_PROXY=\(proxyURL) HTTP_PROXY=\(proxyURL) https_proxy=\(proxyURL) http_proxy=\(proxyURL)",
        "\(p)SSL_CERT_FILE=\(bundle) REQUESTS_CA_BUNDLE=\(bundle) CURL_CA_BUNDLE=\(bundle)",
        "\(p)NODE_EXTRA_CA_CERTS=\(ca)",
        (export ? "# " : "  # ") + "Java: keytool -importcert -noprompt -alias authtap -file \(ca) -keystore \"$JAVA_HOME/lib/security/cacerts\" -storepass changeit"
            + " && java -Dhttps.proxyHost=\(proxyHost(proxyURL)) -Dhttps.proxyPort=\(proxyPort(proxyURL)) ...",
    ]
}

func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}
func proxyHost(_ url: String) -> String {
    let rest = url.replacingOccurrences(of: "http://", with: "")
    return String(rest[..<(rest.lastIndex(of: ":") ?? rest.endIndex)])
}
func proxyPort(_ url: String) -> String {
    String(url[url.index(after: url.lastIndex(of: ":")!)...])
}
func proxyURL(host: String, port: Int) -> String {
    let shown = host == "0.0.0.0" ? "127.0.0.1" : host
    return "http://\(shown.contains(":") ? "[\(shown)]" : shown):\(port)"
}

struct Env: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print export lines that point clients at authtap: eval \"$(authtap env)\".")
    @OptionGroup var listen: ListenOption
    @Option(help: "Directory of the local CA (created if missing).")
    var certs: String = "certs"

    func run() throws {
        let (host, port) = try listen.parsed()
        let dir = CertsDirectory(path: certs)
        _ = try dir.loadOrCreateCA()
        for line in clientSetupLines(proxyURL: proxyURL(host: host, port: port), certs: dir, export: true) {
            print(line)
        }
    }
}

struct Sessions: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List recorded sessions (proxy runs and captures) with their findings.")
    @Option(help: "The capture database.")
    var db: String = "Captures/authtap.sqlite"
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        let database = try openExisting(db)
        let sessions = try database.sessions()
        let counts = try database.analysisCounts()
        switch format {
        case .json:
            try printJSON(sessions)
        case .text:
            if sessions.isEmpty { print("no sessions in \(db)") }
            for s in sessions {
                let end = s.endedAt.map { iso($0) } ?? "running or interrupted"
                var line = "#\(s.id ?? 0)  \(iso(s.startedAt)) → \(end)  \(s.recorded) exchanges  \(s.dropped) dropped  "
                    + "\(TerminalText.escape(s.listen ?? ""))  v\(TerminalText.escape(s.version))"
                if let c = counts[s.id ?? 0] {
                    line += "  \(c.transactions) transactions, \(c.errors) errors, \(c.warnings) warnings"
                } else {
                    line += "  (not analyzed)"
                }
                print(line)
            }
        }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

struct Exchanges: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List recorded exchanges (already masked).")
    @Option(help: "The capture database.")
    var db: String = "Captures/authtap.sqlite"
    @Option(help: "Only this session.")
    var session: Int64?
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text
    @Flag(help: "Also list CONNECT tunnels.")
    var tunnels = false
    @Option(help: "At most this many exchanges (the first ones).")
    var limit: Int?

    func run() throws {
        let database = try openExisting(db)
        let exchanges = try database.exchanges(session: session, limit: limit)
        switch format {
        case .json:
            if tunnels {
                try printJSON(ExchangeDump(exchanges: exchanges.map(ExchangeView.init), tunnels: try database.tunnels(session: session)))
            } else {
                try printJSON(exchanges.map(ExchangeView.init))
            }
        case .text:
            for e in exchanges { print(ConsoleLine.format(e)) }
            if tunnels {
                for t in try database.tunnels(session: session) {
                    print("tunnel #\(t.id ?? 0) \(t.intercepted ? "intercepted" : "relayed") \(TerminalText.escape(t.host)):\(t.port) ↑\(t.bytesFromClient)B ↓\(t.bytesFromUpstream)B \(String(format: "%.0f", t.durationMs))ms \(TerminalText.escape(t.ending))\(t.error.map { " " + $0.rawValue } ?? "")")
                }
            }
        }
    }
}

struct ExchangeDump: Encodable {
    var exchanges: [ExchangeView]
    var tunnels: [Tunnel]
}

/// The JSON shape of `authtap exchanges --format json`: the record, with bodies as text when they are UTF-8.
struct ExchangeView: Encodable {
    var exchange: Exchange
    init(_ e: Exchange) { exchange = e }

    enum Keys: String, CodingKey {
        case id, session, connection, client, url, scheme, host, port, method, target, httpVersion, status
        case requestHeaders, responseHeaders, requestBody, requestBodySize, requestBodyTruncated
        case requestBodyEncoding, requestBodyDecodedSize, requestBodyNote
        case responseBody, responseBodySize, responseBodyTruncated, clientTLS, upstreamTLS, insecureUpstream
        case connectionReused, timings, error, tlsFailure, errorDetail, roles, oauthParams
        case responseBodyEncoding, responseBodyDecodedSize, responseBodyNote
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        let e = exchange
        try c.encode(e.id, forKey: .id)
        try c.encode(e.sessionID, forKey: .session)
        try c.encode(e.connectionID, forKey: .connection)
        try c.encode(e.clientAddress, forKey: .client)
        try c.encode(e.url, forKey: .url)
        try c.encode(e.scheme, forKey: .scheme)
        try c.encode(e.host, forKey: .host)
        try c.encode(e.port, forKey: .port)
        try c.encode(e.method, forKey: .method)
        try c.encode(e.target, forKey: .target)
        try c.encode(e.httpVersion, forKey: .httpVersion)
        try c.encode(e.status, forKey: .status)
        try c.encode(e.requestHeaders.map { [$0.name, $0.value] }, forKey: .requestHeaders)
        try c.encode(e.responseHeaders.map { [$0.name, $0.value] }, forKey: .responseHeaders)
        try c.encode(Self.text(e.requestBody.bytes), forKey: .requestBody)
        try c.encode(e.requestBody.size, forKey: .requestBodySize)
        try c.encode(e.requestBody.truncated, forKey: .requestBodyTruncated)
        try c.encodeIfPresent(e.requestBody.encoding, forKey: .requestBodyEncoding)
        try c.encodeIfPresent(e.requestBody.decodedSize, forKey: .requestBodyDecodedSize)
        try c.encodeIfPresent(e.requestBody.note, forKey: .requestBodyNote)
        try c.encode(Self.text(e.responseBody.bytes), forKey: .responseBody)
        try c.encode(e.responseBody.size, forKey: .responseBodySize)
        try c.encode(e.responseBody.truncated, forKey: .responseBodyTruncated)
        try c.encodeIfPresent(e.responseBody.encoding, forKey: .responseBodyEncoding)
        try c.encodeIfPresent(e.responseBody.decodedSize, forKey: .responseBodyDecodedSize)
        try c.encodeIfPresent(e.responseBody.note, forKey: .responseBodyNote)
        try c.encode(e.clientTLS, forKey: .clientTLS)
        try c.encode(e.upstreamTLS, forKey: .upstreamTLS)
        try c.encode(e.insecureUpstream, forKey: .insecureUpstream)
        try c.encode(e.connectionReused, forKey: .connectionReused)
        try c.encode(e.timings, forKey: .timings)
        try c.encode(e.error, forKey: .error)
        try c.encode(e.tlsFailure, forKey: .tlsFailure)
        try c.encode(e.errorDetail, forKey: .errorDetail)
        try c.encode(e.roles, forKey: .roles)
        try c.encode(e.oauthParams, forKey: .oauthParams)
    }

    static func text(_ bytes: [UInt8]) -> String? {
        if bytes.isEmpty { return nil }
        return String(validating: bytes, as: UTF8.self) ?? "base64:" + Data(bytes).base64EncodedString()
    }
}

func openExisting(_ path: String) throws -> AppDatabase {
    guard FileManager.default.fileExists(atPath: path) else {
        throw ValidationError("no capture database at \(path): run `authtap proxy` first, or pass --db")
    }
    return try AppDatabase.open(path: path)
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    print(TerminalText.escapeJSON(String(decoding: try encoder.encode(value), as: UTF8.self)))
}

/// One formatter for the process: creating one per call dominated large reports.
nonisolated(unsafe) private let isoFormatter: ISO8601DateFormatter = {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f
}()
private let isoLock = NSLock()

func iso(_ date: Date) -> String {
    isoLock.withLock { isoFormatter.string(from: date) }
}

/// One line per exchange: time, method, URL (masked), status, duration, OAuth role, error kind.
enum ConsoleLine {
    static func format(_ e: Exchange) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss.SSS"
        formatter.timeZone = TimeZone.current
        // Method, host and URL are the client's and the server's words: escaped for the terminal.
        let target = TerminalText.escape(e.method == "CONNECT" ? "\(e.host):\(e.port)" : e.url)
        var line = "\(formatter.string(from: e.timings.start)) \(TerminalText.escape(e.method)) \(target)"
        line += " " + (e.status.map(String.init) ?? "---")
        line += " " + (e.timings.end.map { String(format: "%.1fms", $0) } ?? "-")
        if !e.roles.isEmpty { line += " [" + e.roles.map(\.rawValue).joined(separator: ",") + "]" }
        if let error = e.error { line += " !" + error.rawValue + (e.tlsFailure.map { "(\($0.rawValue))" } ?? "") }
        return line
    }
}
