import AuthtapDissector
import AuthtapModel
import CPcap
import Foundation
import Synchronization

/// Live capture: the blocking pcap loop runs on its own thread and hands packets to a bounded
/// queue; a second thread consumes them. Drops are counted: libpcap's (kernel) and ours (queue full).
public final class LiveCapture: @unchecked Sendable {
    private let handle: OpaquePointer
    private var dumper: OpaquePointer?
    public let linkType: Int32
    public let interface: String
    private let ready = DispatchSemaphore(value: 0)
    private let maxQueue = 65_536
    private let maxQueueBytes = 64 << 20
    /// What the capture thread, the dissector thread and the caller share.
    private struct Shared {
        var queue: [(Int, Int64, [UInt8])] = []
        var queueBytes = 0
        var stopped = false
        var captureDone = false
        var redaction = DumpRedaction()
        var queueDrops = 0
        var packets = 0
    }
    private let shared = Mutex(Shared())
    /// Packets dropped because the dissector's queue was full.
    public var queueDrops: Int { shared.withLock { $0.queueDrops } }
    /// Packets the capture delivered.
    public var packets: Int { shared.withLock { $0.packets } }

    public init(interface: String, filter: String, snaplen: Int32 = 65_535, write: String? = nil) throws {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let h = pcap_create(interface, &errbuf) else {
            throw CaptureError(description: "cannot open \(interface): \(String(cString: errbuf))", isPermission: false)
        }
        pcap_set_snaplen(h, snaplen)
        pcap_set_promisc(h, 0)
        pcap_set_timeout(h, 100)
        pcap_set_immediate_mode(h, 1)
        pcap_set_buffer_size(h, 16 << 20)
        let rc = pcap_activate(h)
        if rc == PCAP_ERROR_PERM_DENIED || rc == PCAP_ERROR_PROMISC_PERM_DENIED {
            pcap_close(h)
            throw CaptureError(
                description:
                    "authtap may not capture on \(interface): it needs root or CAP_NET_RAW; run it as root, or grant the capability once: sudo setcap cap_net_raw,cap_net_admin=eip \(CommandLine.arguments[0])",
                isPermission: true)
        }
        if rc == PCAP_ERROR_NO_SUCH_DEVICE {
            pcap_close(h)
            throw CaptureError(description: "no such interface: \(interface) (see `ip link`)", isPermission: false)
        }
        if rc < 0 {
            let text = String(cString: pcap_geterr(h))
            pcap_close(h)
            let permission = text.contains("ermission") || text.contains("not permitted")
            throw CaptureError(
                description: permission
                    ? "authtap may not capture on \(interface) (\(text)): it needs root or CAP_NET_RAW; run it as root, or grant the capability once: sudo setcap cap_net_raw,cap_net_admin=eip \(CommandLine.arguments[0])"
                    : "cannot capture on \(interface): \(text)", isPermission: permission)
        }
        var program = bpf_program()
        if pcap_compile(h, &program, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 {
            let text = String(cString: pcap_geterr(h))
            pcap_close(h)
            throw CaptureError(description: "bad filter \"\(filter)\": \(text)", isPermission: false)
        }
        pcap_setfilter(h, &program)
        pcap_freecode(&program)
        if let write {
            do { dumper = try Self.openDump(h, path: write) } catch {
                pcap_close(h)
                throw error
            }
        }
        self.handle = h
        self.linkType = pcap_datalink(h)
        self.interface = interface
    }

    /// The dump file is the session's traffic: created 0600 (an existing one is truncated and tightened),
    /// since pcap_dump_open would create it with whatever umask the caller has.
    private static func openDump(_ h: OpaquePointer, path: String) throws -> OpaquePointer {
        func failure(_ why: String) -> CaptureError {
            CaptureError(description: "cannot write \(path): \(why)", isPermission: false)
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure(String(cString: strerror(errno))) }
        fchmod(fd, 0o600)
        guard let file = fdopen(fd, "wb") else {
            close(fd)
            throw failure(String(cString: strerror(errno)))
        }
        guard let dumper = pcap_dump_fopen(h, file) else {
            fclose(file)
            throw failure(String(cString: pcap_geterr(h)))
        }
        return dumper
    }

    /// Cuts the TCP payload of these ports out of the written file (the proxy's listen port); the
    /// dissector still sees whole packets. See `DumpRedaction`.
    public func redactPayload(onPorts ports: Set<Int>) {
        let valid = Set(ports.compactMap { UInt16(exactly: $0) })
        shared.withLock { $0.redaction.ports = valid }
    }

    /// Replaces the BPF filter (e.g. once the proxy knows the port it bound).
    public func setFilter(_ filter: String) throws {
        var program = bpf_program()
        guard pcap_compile(handle, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw CaptureError(
                description: "bad filter \"\(filter)\": \(String(cString: pcap_geterr(handle)))", isPermission: false)
        }
        defer { pcap_freecode(&program) }
        guard pcap_setfilter(handle, &program) == 0 else {
            throw CaptureError(
                description: "cannot set filter \"\(filter)\": \(String(cString: pcap_geterr(handle)))",
                isPermission: false)
        }
    }

    deinit {
        if let dumper { pcap_dump_close(dumper) }
        pcap_close(handle)
    }

    /// Starts the capture thread; `consume` runs on a second thread for every packet, in order.
    public func start(consume: @escaping @Sendable (RawPacket) -> Void, finished: @escaping @Sendable () -> Void) {
        let capture = Thread { [self] in self.captureLoop() }
        capture.name = "authtap-pcap"
        capture.start()
        let consumer = Thread { [self] in
            while true {
                ready.wait()
                let (batch, done) = shared.withLock { s in
                    let batch = s.queue
                    s.queue.removeAll(keepingCapacity: true)
                    s.queueBytes = 0
                    return (batch, s.captureDone)
                }
                for (n, t, bytes) in batch {
                    bytes.withUnsafeBytes { consume(RawPacket(number: n, micros: t, bytes: $0)) }
                }
                if done && batch.isEmpty { break }
                if done {
                    if shared.withLock({ $0.queue.isEmpty }) { break }
                }
            }
            finished()
        }
        consumer.name = "authtap-dissect"
        consumer.start()
    }

    /// Starts capturing and dissecting: every finished handshake attempt goes to `emit` (on the
    /// dissector thread); `finished` runs once the capture has stopped and every open attempt got its record.
    public func startDissecting(
        emit: @escaping @Sendable (HandshakeRecord) -> Void, finished: @escaping @Sendable () -> Void
    ) {
        let dissector = Dissector(linkType: linkType, emit: emit)
        start(
            consume: { dissector.feed($0) },
            finished: {
                dissector.finish()
                finished()
            })
    }

    /// The tracker and the last timestamp, used by the dissector thread alone.
    private final class Dissector: @unchecked Sendable {
        let linkType: Int32
        let tracker: HandshakeTracker
        var last: Int64 = 0
        init(linkType: Int32, emit: @escaping @Sendable (HandshakeRecord) -> Void) {
            self.linkType = linkType
            self.tracker = HandshakeTracker(emit: emit)
        }
        func feed(_ packet: RawPacket) {
            last = packet.micros
            guard let segment = PacketDecoder.tcp(packet.bytes, linkType: linkType) else { return }
            tracker.feed(packetNumber: packet.number, micros: packet.micros, segment: segment, packet: packet.bytes)
        }
        func finish() { tracker.finishAll(at: last) }
    }

    private func captureLoop() {
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        while true {
            let (stop, redaction) = shared.withLock { ($0.stopped, $0.redaction) }
            if stop { break }
            let rc = pcap_next_ex(handle, &header, &data)
            if rc == 1, let header, let data {
                let len = Int(authtap_pcap_caplen(header))
                if let dumper {
                    let keep = redaction.captureLength(.init(start: data, count: len), linkType: linkType)
                    dump(dumper, header, data, keep: keep)
                }
                let bytes = Array(UnsafeBufferPointer(start: data, count: len))
                let micros = authtap_pcap_ts_usec(header)
                let queued = shared.withLock { s in
                    s.packets += 1
                    guard s.queue.count < maxQueue && s.queueBytes + len < maxQueueBytes else {
                        s.queueDrops += 1
                        return false
                    }
                    s.queue.append((s.packets, micros, bytes))
                    s.queueBytes += len
                    return true
                }
                if queued { ready.signal() }
            } else if rc == 0 {
                continue  // timeout: look at the stop flag
            } else {
                break
            }
        }
        if let dumper { pcap_dump_flush(dumper) }
        shared.withLock { $0.captureDone = true }
        ready.signal()
    }

    /// Writes the packet, or its first `keep` bytes with the original length kept in the record header.
    private func dump(
        _ dumper: OpaquePointer, _ header: UnsafePointer<pcap_pkthdr>, _ data: UnsafePointer<UInt8>,
        keep: Int
    ) {
        let user = UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self)
        guard keep < Int(authtap_pcap_caplen(header)) else { return pcap_dump(user, header, data) }
        var cut = header.pointee
        cut.caplen = UInt32(keep)
        pcap_dump(user, &cut, data)
    }

    public func stop() {
        shared.withLock { $0.stopped = true }
        pcap_breakloop(handle)
    }

    /// libpcap's counters: packets received and dropped by the kernel or the interface.
    public var kernelStats: (received: Int, dropped: Int) {
        var stats = pcap_stat()
        guard pcap_stats(handle, &stats) == 0 else { return (0, 0) }
        return (Int(stats.ps_recv), Int(stats.ps_drop) + Int(stats.ps_ifdrop))
    }
}
