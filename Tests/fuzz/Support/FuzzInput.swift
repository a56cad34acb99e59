/// Reads a fuzzer's bytes as a few choices followed by payloads. Every read is total: past the end it
/// returns zero or empty, so every input, however short, is a valid one.
public struct FuzzInput {
    public private(set) var bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = Array(UnsafeBufferPointer(start: data, count: size))
    }

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { offset >= bytes.count }

    /// One byte, or 0 past the end.
    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// A choice in `0..<count` (count > 0).
    public mutating func choose(_ count: Int) -> Int { Int(byte()) % max(1, count) }

    /// Bytes up to (not including) the next `separator`, which is consumed; the rest when there is none.
    public mutating func field(separator: UInt8 = 0) -> [UInt8] {
        let start = min(offset, bytes.count)
        let end = bytes[start...].firstIndex(of: separator) ?? bytes.count
        offset = min(end + 1, bytes.count + 1)
        return Array(bytes[start..<end])
    }

    /// `field` as text (invalid UTF-8 repaired, as the capture path does).
    public mutating func text(separator: UInt8 = 0) -> String {
        String(decoding: field(separator: separator), as: UTF8.self)
    }

    /// Everything not yet read.
    public mutating func rest() -> [UInt8] {
        let start = min(offset, bytes.count)
        offset = bytes.count
        return Array(bytes[start...])
    }
}

/// libFuzzer's driver, for the entry point SwiftPM gives an executable target (`<Target>_main`, which it links as
/// `main`): each harness hands its `LLVMFuzzerTestOneInput` to it.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

public func runFuzzer(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt {
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector, callback)
}
