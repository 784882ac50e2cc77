using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace NatKit.Net.Internal;

/// <summary>Linux's recvmmsg/sendmmsg: one system call for a batch of datagrams on a blocking UDP socket.</summary>
internal static unsafe partial class DatagramBatchIo
{
    public const int MSG_TRUNC = 0x20;
    public const int MSG_WAITFORONE = 0x10000;

    /// <summary>The native layout below is LP64 Linux's (x86-64, arm64).</summary>
    public static bool Supported { get; } = OperatingSystem.IsLinux() && IntPtr.Size == 8 && sizeof(MMsgHdr) == 64;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public byte* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MMsgHdr
    {
        public MsgHdr Header;
        public uint Length;
    }

    [LibraryImport("libc", EntryPoint = "recvmmsg", SetLastError = true)]
    public static partial int RecvMmsg(int fd, MMsgHdr* messages, uint count, int flags, void* timeout);

    [LibraryImport("libc", EntryPoint = "sendmmsg", SetLastError = true)]
    public static partial int SendMmsg(int fd, MMsgHdr* messages, uint count, int flags);
}

/// <summary>A <see cref="DatagramBatch"/>'s native message headers: one mmsghdr, iovec and sockaddr per slot.</summary>
internal sealed unsafe class MessageHeaders : IDisposable
{
    private const int NameLength = 128; // sizeof(struct sockaddr_storage)

    private readonly int _capacity;
    private readonly byte* _data;
    private readonly int _slotLength;
    private DatagramBatchIo.MMsgHdr* _messages;
    private DatagramBatchIo.IoVec* _iov;
    private byte* _names;

    public MessageHeaders(int capacity, byte* data, int slotLength)
    {
        _capacity = capacity;
        _data = data;
        _slotLength = slotLength;
        _messages = (DatagramBatchIo.MMsgHdr*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(DatagramBatchIo.MMsgHdr));
        _iov = (DatagramBatchIo.IoVec*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(DatagramBatchIo.IoVec));
        _names = (byte*)NativeMemory.AllocZeroed((nuint)capacity, NameLength);
    }

    public DatagramBatchIo.MMsgHdr* Messages => _messages;

    /// <summary>Every slot whole, every name buffer empty: ready for recvmmsg.</summary>
    public void PrepareReceive()
    {
        for (var i = 0; i < _capacity; i++)
        {
            Prepare(i, _slotLength, NameLength);
        }
    }

    /// <summary>Slot <paramref name="index"/> carries <paramref name="length"/> bytes to <paramref name="to"/>.</summary>
    public void PrepareSend(int index, int length, SocketAddress to)
    {
        to.Buffer.Span[..to.Size].CopyTo(new Span<byte>(_names + ((nint)index * NameLength), NameLength));
        Prepare(index, length, to.Size);
    }

    /// <summary>After recvmmsg: the bytes received into slot <paramref name="index"/>, and whether the datagram
    /// was larger than the slot.</summary>
    public int ReceivedLength(int index, out bool truncated)
    {
        truncated = (_messages[index].Header.Flags & DatagramBatchIo.MSG_TRUNC) != 0;
        return (int)_messages[index].Length;
    }

    /// <summary>After recvmmsg: whether slot <paramref name="index"/> came with a sender's address.</summary>
    public bool HasSender(int index) => _messages[index].Header.NameLength >= 2;

    /// <summary>After recvmmsg: copies the sender of slot <paramref name="index"/> into <paramref name="into"/>.</summary>
    public void CopySender(int index, SocketAddress into)
    {
        var length = Math.Min((int)_messages[index].Header.NameLength, into.Buffer.Length);
        new ReadOnlySpan<byte>(_names + ((nint)index * NameLength), length).CopyTo(into.Buffer.Span);
        into.Size = length;
    }

    private void Prepare(int index, int length, int nameLength)
    {
        var iov = _iov + index;
        iov->Base = _data + ((nint)index * _slotLength);
        iov->Length = (nuint)length;
        var m = _messages + index;
        m->Header.Name = _names + ((nint)index * NameLength);
        m->Header.NameLength = (uint)nameLength;
        m->Header.Iov = iov;
        m->Header.IovLength = 1;
        m->Header.Control = null;
        m->Header.ControlLength = 0;
        m->Header.Flags = 0;
        m->Length = 0;
    }

    public void Dispose()
    {
        NativeMemory.Free(_messages);
        NativeMemory.Free(_iov);
        NativeMemory.Free(_names);
        _messages = null;
        _iov = null;
        _names = null;
    }
}
