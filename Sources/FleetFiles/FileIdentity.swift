/// One version of one file, told apart without reading it: the inode, the size and both times.
///
/// Any write moves the modification and change times; the owner can set the modification time back with
/// `utimes`, but that moves the change time, which only the kernel sets. So a file whose identity is
/// unchanged still holds the bytes it held when the identity was taken, unless it was written again within
/// the filesystem's timestamp granularity of that moment; whoever caches by identity must allow for that.
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    public let size: Int64
    public let modificationSeconds: Int64
    public let modificationNanoseconds: Int64
    public let changeSeconds: Int64
    public let changeNanoseconds: Int64

    public init(
        device: UInt64, inode: UInt64, size: Int64, modificationSeconds: Int64, modificationNanoseconds: Int64,
        changeSeconds: Int64, changeNanoseconds: Int64
    ) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modificationSeconds = modificationSeconds
        self.modificationNanoseconds = modificationNanoseconds
        self.changeSeconds = changeSeconds
        self.changeNanoseconds = changeNanoseconds
    }

    /// The modification time in nanoseconds since the epoch (both parts in one number, as state.db keeps it).
    public var modifiedNanosecondsSinceEpoch: Int64 {
        modificationSeconds * 1_000_000_000 + modificationNanoseconds
    }
}
