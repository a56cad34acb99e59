public struct TokenFormat: Sendable { public let id: String; public let prefixes: [String]; public let source: String; public let example: String }
public enum TokenFormats {
    public static let all: [TokenFormat] = []
    public static func scan(_ bytes: UnsafeBufferPointer<UInt8>) -> [(range: Range<Int>, format: TokenFormat)] { [] }
}
public enum EntropySweep {
    public static func highEntropyRuns(_ bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] { [] }
}
