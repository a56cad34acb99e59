import ArgumentParser
import AuthtapCapture
import AuthtapDissector
import AuthtapModel
import AuthtapStore
import Foundation
import Synchronization

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
    @OptionGroup var db: DatabaseOption
    @Flag(help: "Print nothing per handshake.")
    var quiet = false

    func validate() throws {
        if (interface == nil) == (read == nil) { throw ValidationError("give either --interface IF or --read FILE") }
        if read != nil && (write != nil || duration != nil) {
            throw ValidationError("--write and --duration apply to live capture only")
        }
        for p in port where !(1...65535).contains(p) { throw ValidationError("--port \(p) is not a TCP port") }
    }

    var bpf: String {
        if let filter { return filter }
        return "tcp and (" + ([443] + port).map { "port \($0)" }.joined(separator: " or ") + ")"
    }

    func run() throws {
        if let read { return try offline(read) }
        // validate() makes sure one of the two is given.
        guard let interface else { throw ValidationError("give either --interface IF or --read FILE") }
        try live(interface)
    }

    private func offline(_ path: String) throws {
        let result: OfflineDissection.Result
        // Validate the file before creating a session for it.
        do { _ = try PcapFile(path: path) } catch let error as CaptureError {
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(error.description))\n".utf8))
            throw ExitCode(2)
        }
        let database = try AppDatabase.open(path: db.path)
        let session = try database.startSession(
            version: authtapVersion, arguments: ["capture", "--read", path], listen: nil)
        let sessionID = try insertedID(session.id, of: "session")
        let storeError = Mutex<String?>(nil)
        do {
            result = try OfflineDissection.run(path: path) { batch in
                do { try database.insert(handshakes: batch, session: sessionID) } catch {
                    let text = TerminalText.escape("\(error)")
                    storeError.withLock { $0 = text }
                }
            }
        } catch let error as CaptureError {
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(error.description))\n".utf8))
            throw ExitCode(2)
        }
        if let error = storeError.withLock({ $0 }) { throw ValidationError("could not store handshakes: \(error)") }
        try database.endSession(sessionID, dropped: 0)
        if !quiet { for r in result.records { print(HandshakeLine.format(r)) } }
        let counts = Dictionary(grouping: result.records, by: \.outcome)
            .map { "\($0.value.count) \($0.key.rawValue)" }.sorted().joined(separator: ", ")
        let summary =
            "authtap: \(path): \(result.packets) packets, \(result.records.count) handshakes"
            + "\(counts.isEmpty ? "" : " (\(counts))") → session \(sessionID)\n"
        FileHandle.standardError.write(Data(summary.utf8))
        if let error = result.error {
            let reason = TerminalText.escape("\(error)")
            FileHandle.standardError.write(Data("authtap: \(reason); the handshakes before it are stored\n".utf8))
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
        let database = try AppDatabase.open(path: db.path)
        let session = try database.startSession(
            version: authtapVersion, arguments: Array(CommandLine.arguments.dropFirst()), listen: nil)
        let sessionID = try insertedID(session.id, of: "session")
        let sink = HandshakeSink(database: database, session: sessionID, quiet: quiet)
        let finished = DispatchSemaphore(value: 0)
        let stop = StopSignals()
        let banner =
            "authtap capturing on \(interface) (\(bpf))\(write.map { ", writing \($0)" } ?? ""), "
            + "session \(sessionID)\n"
        FileHandle.standardOutput.write(Data(banner.utf8))
        capture.startDissecting(emit: { sink.add($0) }, finished: { finished.signal() })
        _ = stop.wait(timeout: duration)
        capture.stop()
        finished.wait()
        sink.flush()
        let (received, kernelDrops) = capture.kernelStats
        try database.endSession(sessionID, dropped: kernelDrops + capture.queueDrops)
        let summary =
            "authtap: \(capture.packets) packets (libpcap counted \(received)), "
            + "\(kernelDrops) dropped by the kernel, \(capture.queueDrops) by authtap; "
            + "\(sink.count) handshakes → session \(sessionID)\n"
        FileHandle.standardError.write(Data(summary.utf8))
    }
}
