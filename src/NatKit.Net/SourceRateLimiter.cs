using System.Buffers.Binary;
using System.Net;

namespace NatKit.Net;

/// <summary>
/// A token bucket per source IP address in a fixed-size open-addressing table: memory is bounded no matter how
/// many (possibly spoofed) sources send, lookups allocate nothing, and an address that is evicted simply starts
/// with a full bucket again. Time comes from the injected <see cref="TimeProvider"/>.
/// </summary>
public sealed class SourceRateLimiter
{
    private const int Probe = 4;

    private readonly Entry[] _table;
    private readonly int _mask;
    private readonly double _ratePerTick;
    private readonly double _burst;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();

    public SourceRateLimiter(int ratePerSecond, int tableSize, TimeProvider time)
    {
        var size = 16;
        while (size < tableSize)
        {
            size <<= 1;
        }

        _table = new Entry[size];
        _mask = size - 1;
        _burst = ratePerSecond;
        _ratePerTick = (double)ratePerSecond / time.TimestampFrequency;
        _time = time;
    }

    /// <summary>Takes one token for <paramref name="source"/>'s address; false when its bucket is empty.</summary>
    public bool TryAcquire(IPEndPoint source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var key = Key(source.Address);
        var now = _time.GetTimestamp();
        var hash = (int)((key.High * 0x9E3779B97F4A7C15UL ^ key.Low * 0xC2B2AE3D27D4EB4FUL) >> 40);
        lock (_gate)
        {
            var victim = -1;
            var oldest = long.MaxValue;
            for (var i = 0; i < Probe; i++)
            {
                var slot = (hash + i) & _mask;
                ref var e = ref _table[slot];
                if (e.Used && e.High == key.High && e.Low == key.Low)
                {
                    e.Tokens = Math.Min(_burst, e.Tokens + ((now - e.Last) * _ratePerTick));
                    e.Last = now;
                    if (e.Tokens < 1)
                    {
                        return false;
                    }

                    e.Tokens -= 1;
                    return true;
                }

                var age = e.Used ? e.Last : long.MinValue;
                if (age < oldest)
                {
                    oldest = age;
                    victim = slot;
                }
            }

            ref var v = ref _table[victim];
            v = new Entry { High = key.High, Low = key.Low, Last = now, Tokens = _burst - 1, Used = true };
            return true;
        }
    }

    /// <summary>The address as 128 bits, IPv4 in its IPv4-mapped IPv6 form (so both spellings share a bucket),
    /// without allocating.</summary>
    private static (ulong High, ulong Low) Key(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out var written);
        return written == 4
            ? (0, 0xFFFF_0000_0000UL | BinaryPrimitives.ReadUInt32BigEndian(bytes))
            : (BinaryPrimitives.ReadUInt64BigEndian(bytes), BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));
    }

    private struct Entry
    {
        public ulong High;
        public ulong Low;
        public long Last;
        public double Tokens;
        public bool Used;
    }
}
