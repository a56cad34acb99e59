import ArgumentParser
import AuthtapAnalyzer
import AuthtapCapture
import AuthtapDissector
import AuthtapCA
import AuthtapModel
import AuthtapOAuth
import AuthtapProxy
import AuthtapStore
import Dispatch
import Foundation
import X509

struct Proxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the recording, secret-masking HTTPS intercepting proxy.",
        discussion: """
            Point a client at it with HTTPS_PROXY and trust the CA it prints. Every exchange is masked \
            and recorded in the capture database; Ctrl-C stops it without losing a completed exchange. \
            The --proxy-auth credentials can also come from the AUTHTAP_PROXY_AUTH environment variable, \
            which keeps them out of `ps`.
            """)

    @OptionGroup var listen: ListenOption
    @OptionGroup var paths: CommonPaths

    @Flag(help: "Allow a non-loopback --listen address (requires --proxy-auth).")
    var allowRemote = false

    @Flag(help: """
        With --allow-remote: also reach loopback, private, link-local (cloud metadata) and other non-public \
        addresses, which are refused by default.
        """)
    var allowPrivateTargets = false

    @Option(help: """
        With --allow-remote: upstream ports clients may reach, as LIST like 80,443,8000-8100 (default 80,443,8443).
        """)
    var allowPorts: String?

    @Option(name: .customLong("proxy-auth"), help: "Require Proxy-Authorization Basic USER:PASS (or set AUTHTAP_PROXY_AUTH).")
    var proxyAuthOption: String?

    var proxyAuth: String? { proxyAuthOption ?? ProcessInfo.processInfo.environment["AUTHTAP_PROXY_AUTH"] }

    @Option(help: "Intercept only CONNECT hosts matching this glob (repeatable); others are relayed byte for byte.")
    var intercept: [String] = []

    @Option(help: """
        Bytes of each body to record: the captured wire bytes and, for a compressed body, the decoded text \
        (a decompression bomb stops here and is marked truncated).
        """)
    var bodyLimit: Int = 1 << 20

    @Option(help: "Seconds to wait for an upstream TCP connection.")
    var connectTimeout: Double = 10

    @OptionGroup var limits: LimitOptions

    @Option(help: "PEM file of extra trust anchors for upstream servers (repeatable).")
    var upstreamCa: [String] = []

    @Flag(help: "Do not verify upstream certificates (noted on every exchange).")
    var insecureUpstream = false

    @Option(help: """
        Write NSS key-log lines for both TLS legs to FILE (mode 0600): anyone holding it can decrypt the traffic. \
        Only this option turns key logging on; SSLKEYLOGFILE is ignored.
        """)
    var keylog: String?

    @Option(help: "Capture TLS handshakes on this interface with libpcap during the session (needs root or CAP_NET_RAW).")
    var pcap: String?

    @Option(help: "With --pcap: also capture TCP on this port (repeatable; 443 and the listen port always are).")
    var pcapPort: [Int] = []

    @Option(help: """
        With --pcap: write the captured packets to this pcap file (mode 0600). On the listen port only whole TLS \
        records keep their bytes; other payload (CONNECT with Proxy-Authorization, plain http://) is cut after the \
        TCP header.
        """)
    var pcapWrite: String?

    @Flag(help: "With --pcap-write: keep the listen port's plaintext payload too (it holds unmasked secrets).")
    var pcapWritePlaintext = false

    @Flag(help: "Do not print a line per exchange, nor live findings.")
    var quiet = false

    @Flag(inversion: .prefixedNo, help: "Analyze the session when the proxy stops and store the findings (up to 20,000 OAuth exchanges; beyond, run `authtap analyze`).")
    var analyze = true

    /// Above this, the analysis at exit would hold the whole session in memory in the proxy process.
    static let analyzeAtExitLimit = 20_000

    @Option(help: "Event loop threads (default: one per core, less one for the capture writer; at least one).")
    var threads: Int?

    func validate() throws {
        let (host, _) = try listen.parsed()
        if !ProxyConfiguration.isLoopback(host) {
            if !allowRemote {
                throw ValidationError("refusing to listen on \(host): it is not a loopback address. Pass --allow-remote together with --proxy-auth USER:PASS to expose authtap beyond this machine.")
            }
            if proxyAuth == nil {
                throw ValidationError("--allow-remote requires --proxy-auth USER:PASS: authtap never runs as an open proxy.")
            }
        }
        if let auth = proxyAuth, !auth.contains(":") || auth.hasPrefix(":") {
            throw ValidationError("--proxy-auth must be USER:PASS")
        }
        if let auth = proxyAuth, ProxyCredentials(auth) == nil {
            throw ValidationError("--proxy-auth needs a non-empty password: USER:PASS")
        }
        if let allowPorts, TargetPolicy.parsePorts(allowPorts) == nil {
            throw ValidationError(
                "--allow-ports must be a comma-separated list of ports or ranges in 1-65535, like 80,443,8000-8100")
        }
        if bodyLimit < 0 { throw ValidationError("--body-limit must be ≥ 0") }
        // SQLite stores at most 1,000,000,000 bytes in one value (SQLITE_MAX_LENGTH).
        if bodyLimit > 512 << 20 { throw ValidationError("--body-limit must be at most 536870912 (512 MiB): each body prefix is one SQLite value") }
        if connectTimeout <= 0 { throw ValidationError("--connect-timeout must be > 0") }
    }

    /// The writer thread runs this much nicer than the event loops: under load it fills the CPU time
    /// the request path leaves idle instead of preempting it (measured: +8 % requests/s on 2 cores,
    /// README "Performance"); backpressure still bounds its backlog.
    static let writerNiceness: Int32 = 10

    /// The command line as recorded in the session row, with the --proxy-auth password masked.
    static func maskedArguments(_ args: ArraySlice<String>, masker: Masker) -> [String] {
        var out: [String] = []
        var maskNext = false
        for arg in args {
            if maskNext {
                out.append(maskCredential(arg, masker: masker))
                maskNext = false
            } else if arg == "--proxy-auth" {
                out.append(arg)
                maskNext = true
            } else if arg.hasPrefix("--proxy-auth=") {
                out.append("--proxy-auth=" + maskCredential(String(arg.dropFirst(13)), masker: masker))
            } else {
                out.append(masker.maskFreeText(arg))
            }
        }
        return out
    }

    static func maskCredential(_ value: String, masker: Masker) -> String {
        guard let colon = value.firstIndex(of: ":") else { return masker.marker(kind: "password", value: value) }
        return value[..<colon] + ":" + masker.marker(kind: "password", value: String(value[value.index(after: colon)...]))
    }

    func run() async throws {
        let (host, port) = try listen.parsed()
        var config = ProxyConfiguration()
        config.host = host
        config.port = port
        config.allowRemote = allowRemote
        config.targetPolicy.enforced = allowRemote
        config.targetPolicy.allowPrivateTargets = allowPrivateTargets
        if let allowPorts { config.targetPolicy.allowedPorts = TargetPolicy.parsePorts(allowPorts) }
        config.targetPolicy.ownAddresses = TargetPolicy.machineAddresses()
        if let auth = proxyAuth, let colon = auth.firstIndex(of: ":") {
            config.proxyAuth = (String(auth[..<colon]), String(auth[auth.index(after: colon)...]))
        }
        config.bodyLimit = bodyLimit
        config.connectTimeout = connectTimeout
        config.limits = limits.value
        config.intercept = intercept
        config.insecureUpstream = insecureUpstream
        if let threads { config.threads = threads }
        var keyLogFile: KeyLogFile? = nil
        if let keylog, !keylog.isEmpty {
            keyLogFile = try KeyLogFile(path: keylog)
            config.keyLog = keyLogFile!.callback
        } else if let inherited = ProcessInfo.processInfo.environment["SSLKEYLOGFILE"], !inherited.isEmpty {
            // A variable left set for a browser must not quietly write the keys to every secret of this session.
            FileHandle.standardError.write(Data(("authtap: warning: SSLKEYLOGFILE is ignored; to write TLS keys, "
                + "pass --keylog FILE (anyone holding that file can decrypt the traffic)\n").utf8))
        }
        // Packet capture beside the proxy: opened first, so a missing privilege stops us before listening.
        var capture: LiveCapture? = nil
        if let pcap {
            let ports = Set([443, port == 0 ? nil : port].compactMap { $0 } + pcapPort).sorted()
            let filter = "tcp and (" + ports.map { "port \($0)" }.joined(separator: " or ") + ")"
            do {
                capture = try LiveCapture(interface: pcap, filter: filter, write: pcapWrite)
                if !pcapWritePlaintext { capture?.redactPayload(onPorts: [port]) }
            } catch let error as CaptureError {
                // libpcap's words can quote a file's or an interface's name: escaped for the terminal.
                FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(error.description))\n".utf8))
                throw ExitCode(2)
            }
        }

        let certs = CertsDirectory(path: paths.certs)
        let ca = try certs.loadOrCreateCA()
        let fingerprintKey = try certs.loadOrCreateFingerprintKey()
        let masker = Masker(fingerprinter: Fingerprinter(key: fingerprintKey), bodyLimit: bodyLimit)
        var anchors: [X509.Certificate] = []
        for file in upstreamCa { anchors += try loadPEMCertificates(path: file) }
        let trust = UpstreamTrust(extraAnchors: anchors)

        let database = try AppDatabase.open(path: paths.db)
        let session = try database.startSession(version: authtapVersion, arguments: Self.maskedArguments(CommandLine.arguments.dropFirst(), masker: masker), listen: listen.listen)
        let quiet = self.quiet
        let analyzer = Analyzer(caPath: absolute(certs.caCertificatePath))
        let live = quiet ? nil : LiveFindings(analyzer: analyzer)
        let ledger = JWTLedger()
        let printBatch: @Sendable ([Exchange]) -> Void = { batch in
            var out = ""
            for e in batch { out += ConsoleLine.format(e) + "\n" }
            FileHandle.standardOutput.write(Data(out.utf8))
            live?.add(batch)
        }
        let writer = CaptureWriter(database: database, sessionID: session.id!, limits: .init(niceness: Self.writerNiceness),
                                   prepare: { masker.record($0, ledger: ledger) }, onRecorded: quiet ? nil : printBatch)
        let server = try ProxyServer(config: config, ca: ca, trust: trust, writer: writer)
        let address: String
        do {
            let bound = try await server.start()
            address = "\(bound.ipAddress ?? host):\(bound.port ?? port)"
        } catch {
            writer.close()
            let reason = TerminalText.escape("\(error)")
            throw ValidationError("cannot listen on \(TerminalText.escape(listen.listen)): \(reason)")
        }
        let boundPort = Int(address[address.index(after: address.lastIndex(of: ":")!)...]) ?? port
        try database.setListen(session.id!, listen: "\(host.contains(":") ? "[\(host)]" : host):\(boundPort)")
        if let capture {
            let ports = Set([443, boundPort] + pcapPort).sorted()
            // Cut before the filter lets the bound port's packets in.
            if !pcapWritePlaintext { capture.redactPayload(onPorts: [boundPort]) }
            try capture.setFilter("tcp and (" + ports.map { "port \($0)" }.joined(separator: " or ") + ")")
        }
        let url = proxyURL(host: host, port: boundPort)
        var banner = "authtap listening on \(address.contains(":") && !address.contains(".") ? "[\(address[..<address.lastIndex(of: ":")!])]:\(boundPort)" : address)\n"
        banner += "CA certificate: \(absolute(certs.caCertificatePath))\n"
        banner += "Capture database: \(absolute(paths.db)) (session \(session.id!))\n"
        banner += "Point clients at authtap:\n"
        banner += clientSetupLines(proxyURL: url, certs: certs, export: false).joined(separator: "\n") + "\n"
        if insecureUpstream { banner += "WARNING: upstream certificates are NOT verified (--insecure-upstream)\n" }
        if keyLogFile != nil, let path = keylog {
            banner += "TLS key log: \(absolute(path)) (anyone holding it can decrypt both legs; delete it when done)\n"
        }
        FileHandle.standardOutput.write(Data(banner.utf8))
        let handshakeSink = capture.map { _ in HandshakeSink(database: database, session: session.id!, quiet: true) }
        let captureFinished = DispatchSemaphore(value: 0)
        if let capture, let handshakeSink {
            capture.startDissecting(emit: { handshakeSink.add($0) }, finished: { captureFinished.signal() })
        }

        // SIGINT / SIGTERM: stop accepting, drain, flush, exit 0.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let (stop, continuation) = AsyncStream<Int32>.makeStream()
        let sources = [SIGINT, SIGTERM].map { sig -> any DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { continuation.yield(sig) }
            source.resume()
            return source
        }
        for await sig in stop {
            FileHandle.standardError.write(Data("authtap: \(sig == SIGINT ? "SIGINT" : "SIGTERM"), finishing in-flight exchanges (up to 5 s; Ctrl-C again to quit now)\n".utf8))
            break
        }
        // A second signal takes the default action: the process ends at once.
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        withExtendedLifetime(sources) {}
        await server.shutdown(grace: 5)
        var captureSummary = ""
        if let capture, let handshakeSink {
            capture.stop()
            captureFinished.wait()
            handshakeSink.flush()
            let (_, kernelDrops) = capture.kernelStats
            captureSummary = "; pcap: \(capture.packets) packets, \(handshakeSink.count) handshakes, \(kernelDrops) dropped by the kernel, \(capture.queueDrops) by authtap"
        }
        withExtendedLifetime(keyLogFile) {}
        let dropped = writer.droppedCount
        live?.drain()
        // Every exchange is on disk now; the stored analysis covers the whole session.
        var summary = ""
        let analyzable = (try? database.analyzableCount(session: session.id!)) ?? 0
        if analyze && analyzable > Self.analyzeAtExitLimit {
            summary = "; \(analyzable) OAuth exchanges: run `authtap analyze --session \(session.id!)` for the findings"
        } else if analyze {
            do {
                let analysis = analyzer.analyze(try database.exchanges(session: session.id!, analyzable: true),
                                                handshakes: try database.handshakes(session: session.id!).map(\.record), proxyPort: boundPort)
                try database.save(analysis: analysis, session: session.id!)
                let errors = analysis.findings.filter { $0.severity == .error }.count
                let warnings = analysis.findings.filter { $0.severity == .warning }.count
                summary = "; \(analysis.transactions.count) OAuth transactions, \(errors) errors, \(warnings) warnings (authtap analyze --session \(session.id!) explains them)"
            } catch {
                // A store error can quote the database's own text: escaped for the terminal.
                summary = "; analysis failed: \(TerminalText.escape("\(error)"))"
            }
        }
        let refused = proxyAuth == nil
            ? "" : "; \(config.counters.unauthenticated) unauthenticated requests refused (not recorded)"
        FileHandle.standardError.write(Data(
            "authtap: stopped; \(dropped) records dropped\(refused)\(captureSummary)\(summary)\n".utf8))
    }
}
