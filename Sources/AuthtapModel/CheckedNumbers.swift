/// Conversions from floating point that never trap. `Int(someDouble)` stops the process on NaN, infinity and
/// anything past ±9.2e18, and numbers in JSON, HAR files, JWT claims and database rows are whatever their
/// author wrote (`1e300` included).
extension Int {
    /// The whole part of `value`, or `nil` when `value` is NaN, infinite or out of range.
    public init?(wholeNumber value: Double) {
        guard value.isFinite, let n = Int(exactly: value.rounded(.towardZero)) else { return nil }
        self = n
    }

    /// The whole part of `value`, clamped to `Int.min...Int.max`; NaN gives 0.
    public init(saturating value: Double) {
        if value.isNaN {
            self = 0
        } else if value >= 9_223_372_036_854_775_807 {
            self = .max
        } else if value <= -9_223_372_036_854_775_808 {
            self = .min
        } else {
            self = Int(exactly: value.rounded(.towardZero)) ?? 0
        }
    }
}

extension Int64 {
    /// The whole part of `value`, clamped to `Int64.min...Int64.max`; NaN gives 0.
    public init(saturating value: Double) {
        // Int is 64 bits on every platform authtap builds for, so the widening is exact.
        self = Int64(Int(saturating: value))
    }
}
