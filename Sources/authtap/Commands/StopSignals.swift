import Dispatch
import Foundation

/// SIGINT and SIGTERM as events, armed before a command says it is ready.
///
/// A signal that arrives after `SIG_IGN` but before libdispatch has registered its source is lost, and the
/// process then ignores a stop request for good. So the sources are created before the banner is printed, and
/// `init` returns only once each one's registration handler has run, that is once the kernel will deliver it.
final class StopSignals {
    private let sources: [any DispatchSourceSignal]
    private let received: AsyncStream<Int32>
    private let came = DispatchSemaphore(value: 0)

    init() {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let (stream, continuation) = AsyncStream<Int32>.makeStream(bufferingPolicy: .bufferingNewest(4))
        let registered = DispatchGroup()
        let came = self.came
        sources = [SIGINT, SIGTERM].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                continuation.yield(sig)
                came.signal()
            }
            registered.enter()
            source.setRegistrationHandler { registered.leave() }
            source.resume()
            return source
        }
        received = stream
        // Bounded: a registration that never comes must not hang the start; the window it leaves is the old one.
        _ = registered.wait(timeout: .now() + 5)
    }

    /// Waits for the first SIGINT or SIGTERM and returns its name; after it, both take their default action
    /// again, so that a second one ends the process at once.
    func next() async -> String {
        var name = "SIGTERM"
        for await sig in received {
            name = sig == SIGINT ? "SIGINT" : "SIGTERM"
            break
        }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        return name
    }

    /// For synchronous code: waits up to `timeout` seconds (nil: without end); true if a signal came.
    func wait(timeout: TimeInterval?) -> Bool {
        let result = came.wait(timeout: timeout.map { .now() + $0 } ?? .distantFuture)
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        return result == .success
    }
}
