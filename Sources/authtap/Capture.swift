import ArgumentParser
import AuthtapCapture
import AuthtapDissector
import AuthtapModel
import AuthtapStore
import Foundation

struct Capture: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Capture TLS handshakes with libpcap (live or from a pcap/pcapng file) and classify how each ended.",
        discussion: """
            Catches what a proxy never sees: a SYN with no answer, a refused port, a ClientHello dropped by a \
            middlebox, a TLS alert, a reset during the handshake. Live capture needs root or CAP_NET_RAW.
            """)
    @Option(help: "Interface to capture on (e.g. lo, eth0, any).")
    var interface: String?
    @Option(help: "Read a pcap or pcapng file instead of capturing.")
    var read: String?
    @Option(help: "BPF filter (default: TCP on 443 and the --port values).")
    var filter: String?
    @Option(help: "Also capture TCP on this port (repeatable).")
    var port: [Int] = []
    @Option(help: "Write the captured packets to this pcap file (open it in Wireshark).")
    var write: String?
    @Option(help: "Stop after this many seconds (default: until Ctrl-C).")
    var duration: Double?
    @Option(help: "The capture database.")
    var db: String = "Captures/authtap.sqlite"
    @Flag(help: "Print nothing per handshake.")
    var quiet = false

    func validate() throws {
        if (interface == nil) == (read == nil) { throw ValidationError("give either --interface IF or --read FILE") }
        if read != nil && (write != nil || duration != nil) { throw ValidationError("--write and --duration apply to live capture only") }
        for p in port where !(1...65535).contains(p) { throw ValidationError("--port \(p) is not a TCP port") }
    }

    var bpf: String {
        if let filter { return filter }
        return "tcp and (" + ([443] + port).map { "port \($0)" }.joined(separator: " or ") + ")"
    }

    func run() throws {
        if let read { return try offline(read) }
        try live(interface!)
    }

    private func offline(_ path: String) throws {
        let result: OfflineDissection.Result
        // Validate the file before creating a session for it.
        do { _ = try PcapFile(path: path) } catch let error as CaptureError {
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(error.description))\n".utf8))
            throw ExitCode(2)
        }
        let database = try AppDatabase.open(path: db)
        let session = try database.startSession(version: authtapVersion, arguments: ["capture", "--read", path], listen: nil)
        let sessionID = session.id!
        let storeErrors = LockedValue<String?>(nil)
        do {
            result = try OfflineDissection.run(path: path) { batch in
                do { try database.insert(handshakes: batch, session: sessionID) } catch { storeErrors.set(TerminalText.escape("\(error)")) }
            }
        } catch let error as CaptureError {
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(error.description))\n".utf8))
            throw ExitCode(2)
        }
        if let error = storeErrors.get() { throw ValidationError("could not store handshakes: \(error)") }
        try database.endSession(sessionID, dropped: 0)
        if !quiet { for r in result.records { print(HandshakeLine.format(r)) } }
        let counts = Dictionary(grouping: result.records, by: \.outcome).map { "\($0.value.count) \($0.key.rawValue)" }.sorted().joined(separator: ", ")
        FileHandle.standardError.write(Data("authtap: \(path): \(result.packets) packets, \(result.records.count) handshakes\(counts.isEmpty ? "" : " (\(counts))") → session \(session.id!)\n".utf8))
        if let error = result.error {
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape("\(error)")); the handshakes before it are stored\n".utf8))
        }
    }

    private func live(_ interface: String) throws {
        let capture: LiveCapture
        do {
            capture = try LiveCapture(interface: interface, filter: bpf, write: write)
        } catch let error as CaptureError {
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(error.description))\n".utf8))
            throw ExitCode(2)
        }
        let database = try AppDatabase.open(path: db)
        let session = try database.startSession(version: authtapVersion, arguments: Array(CommandLine.arguments.dropFirst()), listen: nil)
        let sink = HandshakeSink(database: database, session: session.id!, quiet: quiet)
        let finished = DispatchSemaphore(value: 0)
        FileHandle.standardOutput.write(Data("authtap capturing on \(interface) (\(bpf))\(write.map { ", writing \($0)" } ?? ""), session \(session.id!)\n".utf8))
        capture.startDissecting(emit: { sink.add($0) }, finished: { finished.signal() })
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let stop = DispatchSemaphore(value: 0)
        let sources = [SIGINT, SIGTERM].map { sig -> any DispatchSourceSignal in
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { stop.signal() }
            s.resume()
            return s
        }
        _ = stop.wait(timeout: duration.map { .now() + $0 } ?? .distantFuture)
        capture.stop()
        finished.wait()
        withExtendedLifetime(sources) {}
        sink.flush()
        let (received, kernelDrops) = capture.kernelStats
        try database.endSession(session.id!, dropped: kernelDrops + capture.queueDrops)
        FileHandle.standardError.write(Data("authtap: \(capture.packets) packets (libpcap counted \(received)), \(kernelDrops) dropped by the kernel, \(capture.queueDrops) by authtap; \(sink.count) handshakes → session \(session.id!)\n".utf8))
    }
}

/// Collects records from the dissector thread and stores them in batches.
final class HandshakeSink: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [HandshakeRecord] = []
    private let database: AppDatabase
    private let session: Int64
    private let quiet: Bool
    private(set) var count = 0

    init(database: AppDatabase, session: Int64, quiet: Bool) {
        self.database = database
        self.session = session
        self.quiet = quiet
    }

    func add(_ r: HandshakeRecord) {
        if !quiet { FileHandle.standardOutput.write(Data((HandshakeLine.format(r) + "\n").utf8)) }
        lock.lock()
        pending.append(r)
        count += 1
        let full = pending.count >= 256
        lock.unlock()
        if full { flush() }
    }

    func flush() {
        lock.lock()
        let batch = pending
        pending.removeAll()
        lock.unlock()
        do { try database.insert(handshakes: batch, session: session) } catch {
            FileHandle.standardError.write(Data("authtap: could not store \(batch.count) handshakes: \(TerminalText.escape("\(error)"))\n".utf8))
        }
    }
}

final class LockedValue<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
}

enum HandshakeLine {
    static func format(_ r: HandshakeRecord) -> String {
        // SNI, alerts and certificate names come from the packets: escaped for the terminal.
        let t: (String) -> String = { TerminalText.escape($0) }
        var s = "\(t(r.client)):\(r.clientPort) → \(t(r.server)):\(r.serverPort)  \(r.outcome.rawValue)"
        if let side = r.side { s += " by \(t(side))" }
        if let alert = r.alert { s += " [\(t(alert))]" }
        if let sni = r.sni { s += "  sni=\(t(sni))" }
        if let v = r.serverVersion { s += "  \(t(v))" }
        if let d = r.durationMs { s += String(format: "  %.1fms", d) }
        s += "  packets \(r.firstPacket)-\(r.lastPacket)"
        return s
    }
}

struct Handshakes: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List captured TLS handshake records.")
    @Option(help: "The capture database.")
    var db: String = "Captures/authtap.sqlite"
    @Option(help: "Only this session.")
    var session: Int64?
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        let database = try openExisting(db)
        let rows = try database.handshakes(session: session)
        switch format {
        case .json:
            struct Row: Encodable {
                var id: Int64
                var session: Int64
                var record: HandshakeRecord
            }
            try printJSON(rows.map { Row(id: $0.id, session: $0.session, record: $0.record) })
        case .text:
            for r in rows { print("#\(r.id) " + HandshakeLine.format(r.record) + "  — \(TerminalText.escape(r.record.detail))") }
        }
    }
}
