#!/bin/sh
# Large-vocabulary benchmark: polytask against the PyTorch peer
# (shared/bench/peers/torch_mtl.py) on 2M synthetic impressions with ~1M
# users and ~4M items, one epoch at 1 thread, side by side in one run. The
# peer runs twice: with its default dense Adam and with --sparse-emb
# (SparseAdam on the embeddings). Prints training samples/s, whole-process
# wall time, peak RSS and test AUC of each, and the ratios.
#
#   sh bench/large_vocab/run.sh [MODEL...]     (default: esmm mmoe; from anywhere)
#
# MODEL is a config here without .yaml: esmm, mmoe, or a variant NAME_X of
# one (mmoe_bf16: train.precision bf16). The peers run once per base model
# (the part before the first _), whatever variants of it are listed, and the
# table compares every variant with them.
#
# The data (about 60 MB) is generated into data/ on the first run with
# shared/bench/gen_impressions.py (seed 1). Raw outputs go to out/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/../shared" && pwd)
bin=${POLYTASK:-$root/build/polytask}
out=$here/out
mkdir -p "$out"
[ -x "$bin" ] || { echo "run.sh: $bin not built (make build)" >&2; exit 1; }
if [ ! -f "$here/data/test.csv.gz" ]; then
    echo "generating data/ (2M rows) ..." >&2
    /usr/bin/python3 "$shared/bench/gen_impressions.py" --rows 2000000 --users 1000000 --items 4000000 \
        --seed 1 --out "$here/data" >&2
fi
models=${*:-esmm mmoe}
cats=user_id,item_id,category_id,brand_id,shop_id,user_age,user_gender,user_city,position,hour
bases=""
for m in $models; do
    [ -f "$here/$m.yaml" ] || { echo "run.sh: no config $here/$m.yaml" >&2; exit 1; }
    b=${m%%_*}
    case " $bases " in *" $b "*) ;; *) bases="$bases $b" ;; esac
done

. "$root/bench/lib.sh"

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for b in $bases; do
    for m in $models; do
        [ "${m%%_*}" = "$b" ] || continue
        timed "polytask-$m" "$bin" train --config "$here/$m.yaml" --threads 1 --json
    done
    for v in dense sparse; do
        flag=""; [ $v = sparse ] && flag=--sparse-emb
        timed "peer-$b-$v" /usr/bin/python3 "$shared/bench/peers/torch_mtl.py" --train "$here/data/train.csv.gz" \
            --test "$here/data/test.csv.gz" --labels click,conversion --cat "$cats" --num price --model "$b" \
            --epochs 1 --batch 2048 --lr 0.001 --emb 16 --threads 1 --seed 1 $flag
    done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

printf '%-6s %-22s %12s %9s %9s %9s %9s\n' model engine samples/s wall_s rss_mib auc_click auc_2nd
for b in $bases; do
    second=conversion; [ "$b" = esmm ] && second=ctcvr
    peer_second=conversion; [ "$b" = esmm ] && peer_second="click&conversion"
    engines=""
    for m in $models; do [ "${m%%_*}" = "$b" ] && engines="$engines polytask-$m"; done
    for e in $engines peer-dense peer-sparse; do
        case $e in
            polytask-*) f=$e; sps=$(field "$out/$f.json" train_samples_per_second); t2=$second
                        m=${e#polytask-}; name=polytask; [ "$m" = "$b" ] || name="polytask ${m#"$b"_}" ;;
            *) f=peer-$b-${e#peer-}; sps=$(field "$out/$f.json" train_samples_per_s); t2=$peer_second; name=$e ;;
        esac
        read -r w r < "$out/$f.time"
        printf '%-6s %-22s %12.0f %9.1f %9.1f %9.5f %9.5f\n' "$b" "$name" "$sps" "$w" "$(awk -v r="$r" 'BEGIN { print r / 1024 }')" \
            "$(field "$out/$f.json" tasks click auc)" "$(field "$out/$f.json" tasks "$t2" auc)"
    done
    read -r dw dr < "$out/peer-$b-dense.time"
    read -r sw sr < "$out/peer-$b-sparse.time"
    d=$(field "$out/peer-$b-dense.json" train_samples_per_s)
    s=$(field "$out/peer-$b-sparse.json" train_samples_per_s)
    for e in $engines; do
        read -r pw pr < "$out/$e.time"
        p=$(field "$out/$e.json" train_samples_per_second)
        awk -v m="${e#polytask-}" -v p="$p" -v d="$d" -v s="$s" -v pw="$pw" -v dw="$dw" -v sw="$sw" -v pr="$pr" -v dr="$dr" -v sr="$sr" 'BEGIN {
            bw = dw < sw ? dw : sw; br = dw < sw ? dr : sr
            printf "%-10s ratios: samples/s %.2fx sparse-emb, %.1fx dense; wall %.1fx the better peer; rss %.2f of it\n",
                   m, p / s, p / d, bw / pw, pr / br }'
    done
done
echo "targets: samples/s >= 2x sparse-emb and >= 20x dense; wall >= 3x faster; rss <= 0.5; AUC >= peer - 0.003"
