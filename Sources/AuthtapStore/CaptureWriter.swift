import AuthtapModel
import Dispatch
import Foundation
import Synchronization

/// The one writer: producers enqueue without waiting; a dedicated thread masks (through
/// `prepare`) and inserts in batches. The queue is bounded in count and bytes; what does not
/// fit is dropped and counted, and the count is written to the session row.
public final class CaptureWriter: ExchangeSink {
    public struct Limits: Sendable {
        public var maxPending: Int
        public var maxPendingBytes: Int
        public var batchSize: Int
        /// Above this many queued exchanges the writer asks producers to pause (`isBackedUp`). One batch by
        /// default: what a `kill -9` or a crash can lose is what is not yet in the database, so the backlog is
        /// kept to about the batch being written.
        public var highWater: Int
        /// Above this many queued body bytes producers pause too (large bodies); one batch's bytes by default.
        public var highWaterBytes: Int
        /// At most this many body bytes go to the database in one batch.
        public var batchBytes: Int
        /// The writer thread's nice value (0 = the process's own). The proxy runs it at a lower
        /// priority than its event loops: recording is asynchronous, so the writer takes the CPU the
        /// request path leaves idle, and when it falls behind, `isBackedUp` holds new requests.
        public var niceness: Int32
        public init(
            maxPending: Int = 50_000, maxPendingBytes: Int = 256 << 20, batchSize: Int = 1024, highWater: Int = 1024,
            highWaterBytes: Int = 16 << 20, batchBytes: Int = 16 << 20, niceness: Int32 = 0
        ) {
            self.niceness = niceness
            self.maxPending = maxPending
            self.maxPendingBytes = maxPendingBytes
            self.batchSize = batchSize
            self.highWater = highWater
            self.highWaterBytes = highWaterBytes
            self.batchBytes = batchBytes
        }
    }

    private struct Queue {
        var exchanges: [Exchange] = []
        var tunnels: [Tunnel] = []
        var bytes = 0
        var dropped = 0
        var closed = false
    }

    private let database: AppDatabase
    private let sessionID: Int64
    private let limits: Limits
    private let prepare: @Sendable (Exchange) -> Exchange
    private let onRecorded: (@Sendable ([Exchange]) -> Void)?
    private let queue = Mutex(Queue())
    private var wakeCount: Int { max(1, min(limits.batchSize, limits.highWater) / 8) }
    private var wakeBytes: Int { max(1, min(limits.batchBytes, limits.highWaterBytes) / 8) }
    /// Exchanges queued or being written; producers pause new requests while it is above `highWater`.
    private let backlog = Atomic<Int>(0)
    private let backlogBytes = Atomic<Int>(0)
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    /// `AUTHTAP_WRITER_STATS=1`: per-batch masking and insert times on stderr.
    private let printStats = ProcessInfo.processInfo.environment["AUTHTAP_WRITER_STATS"] != nil

    /// - Parameters:
    ///   - prepare: runs on the writer thread before anything is stored (masking and recognition).
    ///   - onRecorded: called with each stored batch (already prepared, with ids), for the console line.
    ///     `nil` (quiet): the batch is not copied to set its ids.
    public init(
        database: AppDatabase, sessionID: Int64, limits: Limits = .init(),
        prepare: @escaping @Sendable (Exchange) -> Exchange,
        onRecorded: (@Sendable ([Exchange]) -> Void)? = nil
    ) {
        self.database = database
        self.sessionID = sessionID
        self.limits = limits
        self.prepare = prepare
        self.onRecorded = onRecorded
        let thread = Thread { [self] in self.run() }
        thread.name = "authtap-writer"
        thread.start()
    }

    /// Never blocks on disk: returns after an append under a short lock.
    public func submit(_ exchange: consuming Exchange) {
        // Moved into the queue, not copied: a copy retains and then releases every field of the record.
        exchange.sessionID = sessionID
        let size = Self.footprint(exchange)
        var item: Exchange? = consume exchange
        let (queued, signal) = queue.withLock { q -> (Bool, Bool) in
            if q.closed || q.exchanges.count >= limits.maxPending || q.bytes + size > limits.maxPendingBytes {
                q.dropped += 1
                return (false, false)
            }
            q.exchanges.append(item.take()!)
            q.bytes += size
            // Woken at an eighth of the high-water mark, not at a full batch: the batch being written counts
            // toward the mark, so a writer that waited for a full one would hold every producer while it wrote.
            return (true, q.exchanges.count == wakeCount || q.bytes >= wakeBytes)
        }
        // Only what was queued counts toward the backlog: the writer subtracts what it writes.
        guard queued else { return }
        backlog.add(1, ordering: .relaxed)
        backlogBytes.add(size, ordering: .relaxed)
        if signal { wake.signal() }
    }

    /// True while the backlog is above the high-water mark: the proxy then holds new requests
    /// (backpressure) so that memory stays bounded without dropping records.
    public var isBackedUp: Bool {
        backlog.load(ordering: .relaxed) > limits.highWater
            || backlogBytes.load(ordering: .relaxed) > limits.highWaterBytes
    }

    /// Names the calling thread `authtap-writer` (as `top -H` and `/proc/PID/task/*/comm` show it) and
    /// lowers its priority by `niceness`. Linux applies a nice value per thread (the TID).
    static func nameAndPrioritize(niceness: Int32) {
        #if os(Linux)
            Thread.current.name = "authtap-writer"  // on the running thread Foundation sets the OS name too
            guard niceness != 0, let tid = currentThreadID() else { return }
            let which = __priority_which_t(PRIO_PROCESS.rawValue)
            errno = 0
            let current = getpriority(which, tid)
            if errno != 0 || setpriority(which, tid, min(19, current + niceness)) != 0 {
                FileHandle.standardError.write(
                    Data(
                        "authtap: could not lower the writer thread's priority (errno \(errno)); it runs at normal priority\n"
                            .utf8))
            }
        #endif
    }

    #if os(Linux)
        /// The kernel's id of the calling thread (`gettid`, which Swift's Glibc does not export):
        /// `/proc/thread-self` links to `PID/task/TID`.
        static func currentThreadID() -> id_t? {
            var buffer = [CChar](repeating: 0, count: 64)
            let n = readlink("/proc/thread-self", &buffer, buffer.count - 1)
            guard n > 0 else { return nil }
            let link = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard let last = link.split(separator: "/").last else { return nil }
            return id_t(last)
        }
    #endif

    static func footprint(_ e: Exchange) -> Int { e.requestBody.bytes.count + e.responseBody.bytes.count + 1024 }

    public func submit(_ tunnel: Tunnel) {
        var t = tunnel
        t.sessionID = sessionID
        queue.withLock { q in
            if q.closed || q.tunnels.count >= limits.maxPending {
                q.dropped += 1
            } else {
                q.tunnels.append(t)
            }
        }
    }

    public var droppedCount: Int { queue.withLock { $0.dropped } }

    /// Stops accepting, writes everything queued, and marks the session ended.
    public func close() {
        let alreadyClosed = queue.withLock { q -> Bool in
            defer { q.closed = true }
            return q.closed
        }
        if alreadyClosed { return }
        wake.signal()
        finished.wait()
        try? database.endSession(sessionID, dropped: droppedCount)
    }

    private func run() {
        Self.nameAndPrioritize(niceness: limits.niceness)
        var lastDropped = 0
        while true {
            _ = wake.wait(timeout: .now() + .milliseconds(50))
            var batch = takeBatch()
            if batch.more { wake.signal() }
            if !batch.exchanges.isEmpty || !batch.tunnels.isEmpty {
                let started = DispatchTime.now()
                prepareInPlace(&batch.exchanges)
                report("prepared", batch.exchanges.count, since: started)
                store(batch)
            }
            if batch.dropped != lastDropped {
                try? database.recordDrops(sessionID, dropped: batch.dropped)
                lastDropped = batch.dropped
            }
            if batch.closed && queue.withLock({ $0.exchanges.isEmpty && $0.tunnels.isEmpty }) {
                finished.signal()
                return
            }
        }
    }

    /// One turn's work, taken from the queue under its lock.
    private struct Batch {
        var exchanges: [Exchange] = []
        var bytes = 0
        var tunnels: [Tunnel] = []
        var closed = false
        var dropped = 0
        /// More exchanges wait than one batch may hold.
        var more = false
    }

    /// A batch bounded in count and bytes; what is left waits for the next turn. The exchanges are owned by the
    /// batch alone (no other reference), so masking them in place copies nothing.
    private func takeBatch() -> Batch {
        queue.withLock { q in
            var batch = Batch()
            var count = 0
            while count < q.exchanges.count, count < limits.batchSize, batch.bytes < limits.batchBytes {
                batch.bytes += Self.footprint(q.exchanges[count])
                count += 1
            }
            if count == q.exchanges.count {
                // The usual case: everything queued. Swapped out whole, so no record is copied.
                swap(&batch.exchanges, &q.exchanges)
            } else {
                batch.exchanges = Array(q.exchanges.prefix(count))
                q.exchanges.removeFirst(count)
            }
            q.bytes -= batch.bytes
            swap(&batch.tunnels, &q.tunnels)
            batch.closed = q.closed
            batch.dropped = q.dropped
            batch.more = !q.exchanges.isEmpty
            return batch
        }
    }

    /// Masks each exchange where it lies: each raw exchange is freed as soon as its masked form exists, so its
    /// memory is reused, still in cache, by the next one's masking. It is moved out of the array and its
    /// prepared form moved back in (`exchanges[i] = prepare(exchanges[i])` copied it).
    private func prepareInPlace(_ exchanges: inout [Exchange]) {
        exchanges.withUnsafeMutableBufferPointer { records in
            guard let base = records.baseAddress else { return }
            for i in records.indices {
                let raw = (base + i).move()
                (base + i).initialize(to: prepare(raw))
            }
        }
    }

    /// Inserts a prepared batch from this thread (GRDB runs a synchronous write on the calling thread): the
    /// masked batch is still in this core's cache, and no other thread has to wake up for it. A batch the
    /// database refuses is counted as dropped.
    private func store(_ batch: Batch) {
        let started = DispatchTime.now()
        do {
            let ids = try database.writer.write { db in
                try AppDatabase.insert(exchanges: batch.exchanges, tunnels: batch.tunnels, db: db)
            }
            report("inserted", batch.exchanges.count, since: started)
            if let onRecorded {
                var stored = batch.exchanges
                for i in stored.indices where i < ids.count { stored[i].id = ids[i] }
                onRecorded(stored)
            }
        } catch {
            queue.withLock { $0.dropped += batch.exchanges.count + batch.tunnels.count }
            FileHandle.standardError.write(
                Data("authtap: could not write \(batch.exchanges.count) exchanges: \(error)\n".utf8))
        }
        backlog.subtract(batch.exchanges.count, ordering: .relaxed)
        backlogBytes.subtract(batch.bytes, ordering: .relaxed)
    }

    /// `AUTHTAP_WRITER_STATS=1`: one line per batch and stage.
    private func report(_ stage: String, _ count: Int, since start: DispatchTime) {
        guard printStats else { return }
        let micros = (DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1000
        FileHandle.standardError.write(Data("writer: \(count) \(stage) in \(micros)us\n".utf8))
    }
}
