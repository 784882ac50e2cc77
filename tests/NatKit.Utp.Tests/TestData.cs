using System.Security.Cryptography;

namespace NatKit.Utp.Tests;

/// <summary>Deterministic test payloads (the same generator as tests/interop-node/utp-peer.js) and hashing.</summary>
internal static class TestData
{
    /// <summary>xorshift32 bytes from <paramref name="seed"/>: byte i is the low byte of the i-th state.</summary>
    public static byte[] Generate(int length, uint seed)
    {
        var data = new byte[length];
        var x = seed == 0 ? 0x9E3779B9u : seed;
        for (var i = 0; i < length; i++)
        {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            data[i] = (byte)x;
        }

        return data;
    }

    public static string Sha256(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>Reads until end of stream.</summary>
    public static async Task<byte[]> ReadToEndAsync(Stream stream, CancellationToken ct)
    {
        using var ms = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var n = await stream.ReadAsync(buffer, ct);
            if (n == 0)
            {
                return ms.ToArray();
            }

            ms.Write(buffer, 0, n);
        }
    }

    public static async Task WriteChunkedAsync(Stream stream, byte[] data, int chunk, CancellationToken ct)
    {
        for (var i = 0; i < data.Length; i += chunk)
        {
            await stream.WriteAsync(data.AsMemory(i, Math.Min(chunk, data.Length - i)), ct);
        }
    }

    /// <summary>Sends <paramref name="up"/> from <paramref name="a"/> and <paramref name="down"/> from
    /// <paramref name="b"/>, each followed by a half-close, and asserts both arrive intact (SHA-256).</summary>
    public static async Task ExchangeAndVerifyAsync(UtpStream a, UtpStream b, byte[] up, byte[] down, int chunk,
        CancellationToken ct)
    {
        var readB = ReadToEndAsync(b, ct);
        var readA = ReadToEndAsync(a, ct);
        await WriteChunkedAsync(a, up, chunk, ct);
        a.ShutdownWrite();
        await WriteChunkedAsync(b, down, chunk, ct);
        b.ShutdownWrite();
        Assert.Equal(Sha256(up), Sha256(await readB));
        Assert.Equal(Sha256(down), Sha256(await readA));
    }
}
