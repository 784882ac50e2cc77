using FsCheck;
using FsCheck.Fluent;
using NatKit.Utp.Internal;

namespace NatKit.Utp.Tests;

public sealed class ByteRingTests
{
    [Fact]
    public void Property_BehavesLikeABoundedQueue_WhileGrowing()
    {
        var prop = Prop.ForAll(ArbMap.Default.ArbFor<(bool Write, ushort Size)[]>(), ops =>
        {
            var ring = new ByteRing(70_000);
            var model = new Queue<byte>();
            byte next = 0;
            foreach (var (write, size) in ops)
            {
                if (write)
                {
                    var data = new byte[size];
                    for (var i = 0; i < data.Length; i++)
                    {
                        data[i] = next++;
                    }

                    var n = ring.Write(data);
                    if (n != Math.Min(size, 70_000 - model.Count))
                    {
                        return false;
                    }

                    for (var i = 0; i < n; i++)
                    {
                        model.Enqueue(data[i]);
                    }

                    next = (byte)(next - (size - n));
                }
                else
                {
                    var buffer = new byte[size];
                    var n = ring.Read(buffer);
                    if (n != Math.Min(size, model.Count))
                    {
                        return false;
                    }

                    for (var i = 0; i < n; i++)
                    {
                        if (buffer[i] != model.Dequeue())
                        {
                            return false;
                        }
                    }
                }

                if (ring.Count != model.Count)
                {
                    return false;
                }
            }

            return true;
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(300), prop);
    }
}
