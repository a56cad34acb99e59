import ArgumentParser
import AuthtapAnalyzer
import AuthtapCA
import AuthtapCapture
import AuthtapDissector
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

    @Flag(
        help: """
            With --allow-remote: also reach loopback, private, link-local (cloud metadata) and other non-public \
            addresses, which are refused by default.
            """)
    var allowPrivateTargets = false

    @Option(
        help: """
            With --allow-remote: upstream ports clients may reach, as LIST like 80,443,8000-8100 (default 80,443,8443).
            """)
    var allowPorts: String?

    @Option(
        name: .customLong("proxy-auth"),
        help: "Require Proxy-Authorization Basic USER:PASS (or set AUTHTAP_PROXY_AUTH).")
    var proxyAuthOption: String?

    var proxyAuth: String? { proxyAuthOption ?? ProcessInfo.processInfo.environment["AUTHTAP_PROXY_AUTH"] }

    @Option(help: "Intercept only CONNECT hosts matching this glob (repeatable); others are relayed byte for byte.")
    var intercept: [String] = []

    @Option(
        help: """
            Bytes of each body to record: the captured wire bytes and, for a compressed body, the decoded text \
            (a decompression bomb stops here and is marked truncated).
            """)
    var bodyLimit: Int = 1 << 20

    @Option(help: "Seconds to wait for an upstream TCP connection.")
    var connectTimeout: Double = 10

    @OptionGroup var limits: LimitOptions

    @OptionGroup(title: "HTTP/2 and reverse mode") var protocols: ProtocolOptions

    @Option(help: "PEM file of extra trust anchors for upstream servers (repeatable).")
    var upstreamCa: [String] = []

    @Flag(help: "Do not verify upstream certificates (noted on every exchange).")
    var insecureUpstream = false

    @Option(
        help: """
            Write NSS key-log lines for both TLS legs to FILE (mode 0600): anyone holding it can decrypt the traffic. \
            Only this option turns key logging on; SSLKEYLOGFILE is ignored.
            """)
    var keylog: String?

    @Option(
        help: """
            Capture TLS handshakes on this interface with libpcap during the session (needs root or CAP_NET_RAW).
            """)
    var pcap: String?

    @Option(help: "With --pcap: also capture TCP on this port (repeatable; 443 and the listen port always are).")
    var pcapPort: [Int] = []

    @Option(
        help: """
            With --pcap: write the captured packets to this pcap file (mode 0600). On the listen port only whole TLS \
            records keep their bytes; other payload (CONNECT with Proxy-Authorization, plain http://) is cut after the \
            TCP header.
            """)
    var pcapWrite: String?

    @Flag(help: "With --pcap-write: keep the listen port's plaintext payload too (it holds unmasked secrets).")
    var pcapWritePlaintext = false

    @Flag(help: "Do not print a line per exchange, nor live findings.")
    var quiet = false

    @Flag(
        inversion: .prefixedNo,
        help: """
            Analyze the session when the proxy stops and store the findings (up to 20,000 OAuth exchanges; \
            beyond, run `authtap analyze`).
            """)
    var analyze = true

    /// Above this, the analysis at exit would hold the whole session in memory in the proxy process.
    static let analyzeAtExitLimit = 20_000

    @Option(help: "Event loop threads (default: one per core, less one for the capture writer; at least one).")
    var threads: Int?

    func validate() throws {
        let (host, _) = try listen.parsed()
        if !ProxyConfiguration.isLoopback(host) {
            if !allowRemote {
                throw ValidationError(
                    "refusing to listen on \(host): it is not a loopback address. Pass --allow-remote together with "
                        + "--proxy-auth USER:PASS to expose authtap beyond this machine.")
            }
            if proxyAuth == nil {
                throw ValidationError(
                    "--allow-remote requires --proxy-auth USER:PASS: authtap never runs as an open proxy.")
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
        if bodyLimit > 512 << 20 {
            throw ValidationError(
                "--body-limit must be at most 536870912 (512 MiB): each body prefix is one SQLite value")
        }
        if connectTimeout <= 0 { throw ValidationError("--connect-timeout must be > 0") }
        _ = try protocols.targets(allowRemote: allowRemote)
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
        let password = String(value[value.index(after: colon)...])
        return value[..<colon] + ":" + masker.marker(kind: "password", value: password)
    }

    func run() async throws {
        let (host, port) = try listen.parsed()
        var config = configuration(host: host, port: port)
        config.http2 = protocols.http2 == .on
        config.reverse = try protocols.targets(allowRemote: allowRemote)
        let keyLogFile = try openKeyLog()
        if let keyLogFile { config.keyLog = keyLogFile.callback }
        // Packet capture beside the proxy: opened first, so a missing privilege stops us before listening.
        let capture = try openCapture(port: port)

        let certs = CertsDirectory(path: paths.certs)
        let ca = try certs.loadOrCreateCA()
        let fingerprintKey = try certs.loadOrCreateFingerprintKey()
        let masker = Masker(fingerprinter: Fingerprinter(key: fingerprintKey), bodyLimit: bodyLimit)
        let trust = UpstreamTrust(extraAnchors: try upstreamCa.flatMap { try loadPEMCertificates(path: $0) })

        let database = try AppDatabase.open(path: paths.db)
        let session = try database.startSession(
            version: authtapVersion, arguments: Self.maskedArguments(CommandLine.arguments.dropFirst(), masker: masker),
            listen: listen.listen)
        let sessionID = try insertedID(session.id, of: "session")
        let analyzer = Analyzer(caPath: absolute(certs.caCertificatePath))
        let live = quiet ? nil : LiveFindings(analyzer: analyzer)
        let writer = recorder(database: database, sessionID: sessionID, masker: masker, live: live)
        let server = try ProxyServer(config: config, ca: ca, trust: trust, writer: writer)
        let boundPort: Int
        let banner: String
        if config.reverse.isEmpty {
            let bound: (host: String?, port: Int?)
            do {
                let address = try await server.start()
                bound = (address.ipAddress, address.port)
            } catch {
                writer.close()
                let reason = TerminalText.escape("\(error)")
                throw ValidationError("cannot listen on \(TerminalText.escape(listen.listen)): \(reason)")
            }
            boundPort = bound.port ?? port
            try database.setListen(sessionID, listen: "\(host.contains(":") ? "[\(host)]" : host):\(boundPort)")
            banner = self.banner(
                listening: bound.host ?? host, host: host, port: boundPort, certs: certs, sessionID: sessionID,
                keyLogging: keyLogFile != nil)
        } else {
            let listeners: String
            do {
                (listeners, boundPort) = try await startReverse(server, database: database, sessionID: sessionID)
            } catch {
                writer.close()
                throw error
            }
            banner = listeners + reverseBanner(certs: certs, sessionID: sessionID)
        }
        if let capture { try follow(capture, boundPort: boundPort) }
        let stop = StopSignals()
        FileHandle.standardOutput.write(Data(banner.utf8))
        let pcapRun = capture.map { PcapRun(capture: $0, database: database, sessionID: sessionID) }

        // SIGINT / SIGTERM: stop accepting, drain, flush, exit 0.
        let name = await stop.next()
        FileHandle.standardError.write(
            Data(
                "authtap: \(name), finishing in-flight exchanges (up to 5 s; Ctrl-C again to quit now)\n".utf8))
        await server.shutdown(grace: 5)
        let captureSummary = pcapRun?.finish() ?? ""
        withExtendedLifetime(keyLogFile) {}
        let dropped = writer.droppedCount
        live?.drain()
        // Every exchange is on disk now; the stored analysis covers the whole session.
        let summary = analyzeAtExit(database: database, sessionID: sessionID, analyzer: analyzer, proxyPort: boundPort)
        let refused =
            proxyAuth == nil
            ? "" : "; \(config.counters.unauthenticated) unauthenticated requests refused (not recorded)"
        FileHandle.standardError.write(
            Data(
                "authtap: stopped; \(dropped) records dropped\(refused)\(captureSummary)\(summary)\n".utf8))
    }

    /// The proxy's configuration from the options, all but the key log.
    private func configuration(host: String, port: Int) -> ProxyConfiguration {
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
        return config
    }

    /// The one writer: masks each exchange and stores it; unless --quiet, also prints it and feeds live findings.
    private func recorder(
        database: AppDatabase, sessionID: Int64, masker: Masker, live: LiveFindings?
    ) -> CaptureWriter {
        let ledger = JWTLedger()
        let printBatch: @Sendable ([Exchange]) -> Void = { batch in
            var out = ""
            for e in batch { out += ConsoleLine.format(e) + "\n" }
            FileHandle.standardOutput.write(Data(out.utf8))
            live?.add(batch)
        }
        return CaptureWriter(
            database: database, sessionID: sessionID, limits: .init(niceness: Self.writerNiceness),
            prepare: { masker.record($0, ledger: ledger) }, onRecorded: quiet ? nil : printBatch)
    }

    /// The --keylog file, opened 0600; an inherited SSLKEYLOGFILE only gets a warning.
    private func openKeyLog() throws -> KeyLogFile? {
        if let keylog, !keylog.isEmpty {
            return try KeyLogFile(path: keylog)
        } else if let inherited = ProcessInfo.processInfo.environment["SSLKEYLOGFILE"], !inherited.isEmpty {
            // A variable left set for a browser must not quietly write the keys to every secret of this session.
            FileHandle.standardError.write(
                Data(
                    ("authtap: warning: SSLKEYLOGFILE is ignored; to write TLS keys, "
                        + "pass --keylog FILE (anyone holding that file can decrypt the traffic)\n").utf8))
        }
        return nil
    }

    /// The --pcap capture, filtered on 443, the listen port (when fixed) and the --pcap-port values.
    private func openCapture(port: Int) throws -> LiveCapture? {
        guard let pcap else { return nil }
        let ports = Set([443, port == 0 ? nil : port].compactMap { $0 } + pcapPort).sorted()
        let filter = "tcp and (" + ports.map { "port \($0)" }.joined(separator: " or ") + ")"
        do {
            let capture = try LiveCapture(interface: pcap, filter: filter, write: pcapWrite)
            if !pcapWritePlaintext { capture.redactPayload(onPorts: [port]) }
            return capture
        } catch let error as CaptureError {
            // libpcap's words can quote a file's or an interface's name: escaped for the terminal.
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(error.description))\n".utf8))
            throw ExitCode(2)
        }
    }

    /// Points the capture at the port the proxy got, cutting its payload first unless asked not to.
    private func follow(_ capture: LiveCapture, boundPort: Int) throws {
        let ports = Set([443, boundPort] + pcapPort).sorted()
        // Cut before the filter lets the bound port's packets in.
        if !pcapWritePlaintext { capture.redactPayload(onPorts: [boundPort]) }
        try capture.setFilter("tcp and (" + ports.map { "port \($0)" }.joined(separator: " or ") + ")")
    }

    /// What the proxy prints once it listens: where, the CA, the database, and how to point clients at it.
    private func banner(
        listening boundHost: String, host: String, port boundPort: Int, certs: CertsDirectory, sessionID: Int64,
        keyLogging: Bool
    ) -> String {
        let url = proxyURL(host: host, port: boundPort)
        // A host without a dot is taken for an IPv6 address, shown in brackets as a URL writes it.
        let bracketed = !boundHost.contains(".")
        var banner = "authtap listening on \(bracketed ? "[\(boundHost)]" : boundHost):\(boundPort)\n"
        banner += "CA certificate: \(absolute(certs.caCertificatePath))\n"
        banner += "Capture database: \(absolute(paths.db)) (session \(sessionID))\n"
        banner += "Point clients at authtap:\n"
        banner += clientSetupLines(proxyURL: url, certs: certs, export: false).joined(separator: "\n") + "\n"
        if insecureUpstream { banner += "WARNING: upstream certificates are NOT verified (--insecure-upstream)\n" }
        if keyLogging, let path = keylog {
            banner += "TLS key log: \(absolute(path)) (anyone holding it can decrypt both legs; delete it when done)\n"
        }
        return banner
    }

    /// The stored analysis of the whole session, summed up for the last line; past the limit, a pointer to
    /// `authtap analyze` instead.
    private func analyzeAtExit(database: AppDatabase, sessionID: Int64, analyzer: Analyzer, proxyPort: Int) -> String {
        guard analyze else { return "" }
        let analyzable = (try? database.analyzableCount(session: sessionID)) ?? 0
        if analyzable > Self.analyzeAtExitLimit {
            return "; \(analyzable) OAuth exchanges: run `authtap analyze --session \(sessionID)` for the findings"
        }
        do {
            let analysis = analyzer.analyze(
                try database.exchanges(session: sessionID, analyzable: true),
                handshakes: try database.handshakes(session: sessionID).map(\.record), proxyPort: proxyPort)
            try database.save(analysis: analysis, session: sessionID)
            let errors = analysis.findings.filter { $0.severity == .error }.count
            let warnings = analysis.findings.filter { $0.severity == .warning }.count
            return "; \(analysis.transactions.count) OAuth transactions, \(errors) errors, \(warnings) warnings "
                + "(authtap analyze --session \(sessionID) explains them)"
        } catch {
            // A store error can quote the database's own text: escaped for the terminal.
            return "; analysis failed: \(TerminalText.escape("\(error)"))"
        }
    }
}

/// The --pcap capture while the proxy runs: dissected on its own thread into a handshake sink.
private struct PcapRun {
    let capture: LiveCapture
    let sink: HandshakeSink
    let finished = DispatchSemaphore(value: 0)

    init(capture: LiveCapture, database: AppDatabase, sessionID: Int64) {
        self.capture = capture
        sink = HandshakeSink(database: database, session: sessionID, quiet: true)
        let (sink, finished) = (sink, finished)
        capture.startDissecting(emit: { sink.add($0) }, finished: { finished.signal() })
    }

    /// Stops the capture, stores what is pending, and sums it up for the proxy's last line.
    func finish() -> String {
        capture.stop()
        finished.wait()
        sink.flush()
        let (_, kernelDrops) = capture.kernelStats
        return "; pcap: \(capture.packets) packets, \(sink.count) handshakes, "
            + "\(kernelDrops) dropped by the kernel, \(capture.queueDrops) by authtap"
    }
}
