// Package demodata builds the demo's synthetic, deterministic dataset: an
// hcp table of healthcare professionals with the fields of the 2024 pharma
// incident, and a cases table of anonymised clinical cases like the
// hospital registries. Every name, institution and address is generated;
// e-mail domains are under example.com and example.jp. No real person's
// data, ever.
//
// The rows are generated inside PostgreSQL (generate_series), so loading
// 733,820 professionals takes seconds, and the same row counts always give
// the same data.
package demodata

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// HCPRows is the number of professionals in the first incident.
const HCPRows = 733820

// CaseRows is the default number of clinical cases.
const CaseRows = 120000

type person struct{ kanji, kana, romaji string }

var surnames = []person{
	{"佐藤", "サトウ", "sato"}, {"鈴木", "スズキ", "suzuki"}, {"高橋", "タカハシ", "takahashi"}, {"田中", "タナカ", "tanaka"},
	{"伊藤", "イトウ", "ito"}, {"渡辺", "ワタナベ", "watanabe"}, {"山本", "ヤマモト", "yamamoto"}, {"中村", "ナカムラ", "nakamura"},
	{"小林", "コバヤシ", "kobayashi"}, {"加藤", "カトウ", "kato"}, {"吉田", "ヨシダ", "yoshida"}, {"山田", "ヤマダ", "yamada"},
	{"佐々木", "ササキ", "sasaki"}, {"山口", "ヤマグチ", "yamaguchi"}, {"松本", "マツモト", "matsumoto"}, {"井上", "イノウエ", "inoue"},
	{"木村", "キムラ", "kimura"}, {"林", "ハヤシ", "hayashi"}, {"斎藤", "サイトウ", "saito"}, {"清水", "シミズ", "shimizu"},
	{"山崎", "ヤマザキ", "yamazaki"}, {"森", "モリ", "mori"}, {"池田", "イケダ", "ikeda"}, {"橋本", "ハシモト", "hashimoto"},
	{"阿部", "アベ", "abe"}, {"石川", "イシカワ", "ishikawa"}, {"山下", "ヤマシタ", "yamashita"}, {"中島", "ナカジマ", "nakajima"},
	{"石井", "イシイ", "ishii"}, {"小川", "オガワ", "ogawa"}, {"前田", "マエダ", "maeda"}, {"岡田", "オカダ", "okada"},
	{"長谷川", "ハセガワ", "hasegawa"}, {"藤田", "フジタ", "fujita"}, {"後藤", "ゴトウ", "goto"}, {"近藤", "コンドウ", "kondo"},
	{"村上", "ムラカミ", "murakami"}, {"遠藤", "エンドウ", "endo"}, {"青木", "アオキ", "aoki"}, {"坂本", "サカモト", "sakamoto"},
	{"斉藤", "サイトウ", "saito"}, {"福田", "フクダ", "fukuda"}, {"太田", "オオタ", "ota"}, {"西村", "ニシムラ", "nishimura"},
	{"藤井", "フジイ", "fujii"}, {"金子", "カネコ", "kaneko"}, {"岡本", "オカモト", "okamoto"}, {"藤原", "フジワラ", "fujiwara"},
}

var maleGiven = []person{
	{"翔太", "ショウタ", "shota"}, {"大輔", "ダイスケ", "daisuke"}, {"健太", "ケンタ", "kenta"}, {"拓也", "タクヤ", "takuya"},
	{"直樹", "ナオキ", "naoki"}, {"和也", "カズヤ", "kazuya"}, {"誠", "マコト", "makoto"}, {"浩二", "コウジ", "koji"},
	{"隆", "タカシ", "takashi"}, {"博", "ヒロシ", "hiroshi"}, {"剛", "ツヨシ", "tsuyoshi"}, {"亮", "リョウ", "ryo"},
	{"修", "オサム", "osamu"}, {"学", "マナブ", "manabu"}, {"悠真", "ユウマ", "yuma"}, {"蓮", "レン", "ren"},
	{"陽斗", "ハルト", "haruto"}, {"一郎", "イチロウ", "ichiro"}, {"健一", "ケンイチ", "kenichi"}, {"正人", "マサト", "masato"},
}

var femaleGiven = []person{
	{"陽子", "ヨウコ", "yoko"}, {"恵子", "ケイコ", "keiko"}, {"美穂", "ミホ", "miho"}, {"裕子", "ユウコ", "yuko"},
	{"直美", "ナオミ", "naomi"}, {"由美", "ユミ", "yumi"}, {"真由美", "マユミ", "mayumi"}, {"彩", "アヤ", "aya"},
	{"愛", "アイ", "ai"}, {"舞", "マイ", "mai"}, {"美咲", "ミサキ", "misaki"}, {"さくら", "サクラ", "sakura"},
	{"花子", "ハナコ", "hanako"}, {"明美", "アケミ", "akemi"}, {"千尋", "チヒロ", "chihiro"}, {"結衣", "ユイ", "yui"},
	{"葵", "アオイ", "aoi"}, {"麻衣", "マイ", "mai"}, {"智子", "トモコ", "tomoko"}, {"香織", "カオリ", "kaori"},
}

// Places are invented town names; none is a real institution's.
var places = []string{"北ヶ丘", "南陽", "東雲台", "西湊", "桜ヶ原", "緑川", "青葉台", "朝霧", "白鷺", "若葉",
	"霞ヶ浦東", "星見", "月見野", "鶴ヶ谷", "松風", "栄町", "旭ヶ丘", "泉原", "大川端", "山手台",
	"港南台", "千草", "光が丘北", "竹の台", "梅ヶ枝", "日向", "清流", "湖南", "花園台", "丘の上"}

var instKinds = []string{"総合病院", "医療センター", "クリニック", "記念病院", "大学病院", "市民病院", "内科医院", "こども病院", "がんセンター", "リハビリテーション病院"}

var prefectures = []string{"北海道", "宮城県", "東京都", "神奈川県", "埼玉県", "千葉県", "愛知県", "大阪府", "兵庫県", "京都府",
	"広島県", "福岡県", "静岡県", "新潟県", "長野県", "岡山県", "熊本県", "鹿児島県", "沖縄県", "石川県"}

var titles = []string{"院長", "副院長", "教授", "准教授", "講師", "部長", "医長", "科長", "主任", "医員", "看護師長", "薬局長", "技師長", "スタッフ"}
var jobTypes = []string{"医師", "医師", "医師", "歯科医師", "薬剤師", "看護師", "診療放射線技師", "臨床検査技師", "理学療法士", "管理栄養士"}
var departments = []string{"内科", "外科", "循環器内科", "消化器内科", "呼吸器内科", "整形外科", "小児科", "産婦人科", "眼科", "耳鼻咽喉科",
	"皮膚科", "泌尿器科", "精神科", "脳神経外科", "放射線科", "麻酔科", "腫瘍内科", "糖尿病内科", "腎臓内科", "薬剤部"}
var domains = []string{"example.jp", "example.com", "med.example.jp", "hosp.example.jp", "clinic.example.com", "univ.example.jp"}

var registries = []string{"heavy-ion therapy clinical study registry", "national radiotherapy case registry"}
var diagnoses = []string{"C15.9", "C16.9", "C18.7", "C20", "C22.0", "C25.9", "C34.1", "C34.9", "C50.9", "C53.9",
	"C61", "C64", "C67.9", "C71.9", "C73", "C41.2", "C49.9", "C01", "C10.9", "C32.9"}
var stages = []string{"0", "I", "IA", "IB", "II", "IIA", "IIB", "III", "IIIA", "IIIB", "IIIC", "IV", "IVA", "IVB"}
var treatments = []string{"carbon-ion RT", "proton RT", "IMRT", "SBRT", "3D-CRT", "brachytherapy", "chemoradiotherapy", "palliative RT"}

// HCPSchema creates the hcp table.
const HCPSchema = `
CREATE TABLE hcp (
	id                  bigint PRIMARY KEY,
	name                text NOT NULL,
	name_kana           text NOT NULL,
	sex                 text NOT NULL,
	birth_date          date NOT NULL,
	email               text NOT NULL,
	institution         text NOT NULL,
	institution_address text NOT NULL,
	title               text NOT NULL,
	job_type            text NOT NULL,
	department          text NOT NULL,
	updated_at          timestamptz NOT NULL
);`

// CasesSchema creates the cases table.
const CasesSchema = `
CREATE TABLE cases (
	id             bigint PRIMARY KEY,
	registry       text NOT NULL,
	diagnosis_code text NOT NULL,
	stage          text NOT NULL,
	treatment      text NOT NULL,
	institution    text NOT NULL,
	start_date     date NOT NULL
);
`

func arr(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + strings.ReplaceAll(x, "'", "''") + "'"
	}
	return "ARRAY[" + strings.Join(q, ",") + "]::text[]"
}

func field(ps []person, f func(person) string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = f(p)
	}
	return out
}

// HCPInsert returns the statement that fills hcp with ids 1..n. Each
// column picks from its list with a different multiplier, so columns vary
// independently and the result depends only on the id.
func HCPInsert(n int) string {
	k := func(p person) string { return p.kanji }
	kana := func(p person) string { return p.kana }
	rom := func(p person) string { return p.romaji }
	var insts []string
	var addrs []string
	for i := 0; i < 2400; i++ {
		place := places[i%len(places)]
		kind := instKinds[(i/len(places))%len(instKinds)]
		branch := i / (len(places) * len(instKinds))
		name := place + kind
		if branch > 0 {
			name = place + []string{"第二", "中央", "北", "南", "東", "西", "新", "第三"}[(branch-1)%8] + kind
		}
		insts = append(insts, name)
		pref := prefectures[(i*7)%len(prefectures)]
		addrs = append(addrs, fmt.Sprintf("%s%s市%s町%d-%d-%d", pref, place, []string{"本", "中", "元", "新", "栄"}[i%5], 1+i%9, 1+(i*3)%20, 1+(i*11)%30))
	}
	return fmt.Sprintf(`
WITH p AS (
	SELECT %s AS sk, %s AS skana, %s AS sr,
	       %s AS mk, %s AS mkana, %s AS mr,
	       %s AS fk, %s AS fkana, %s AS fr,
	       %s AS inst, %s AS addr, %s AS title, %s AS job, %s AS dept, %s AS dom
)
INSERT INTO hcp
SELECT i,
       p.sk[(1 + (i * 7919) %% %d)::int] || ' ' || CASE WHEN i %% 3 = 0 THEN p.fk[(1 + (i * 104729) %% %d)::int] ELSE p.mk[(1 + (i * 104729) %% %d)::int] END,
       p.skana[(1 + (i * 7919) %% %d)::int] || ' ' || CASE WHEN i %% 3 = 0 THEN p.fkana[(1 + (i * 104729) %% %d)::int] ELSE p.mkana[(1 + (i * 104729) %% %d)::int] END,
       CASE WHEN i %% 3 = 0 THEN 'F' ELSE 'M' END,
       date '1945-01-01' + ((i * 7907) %% 20000)::int,
       CASE WHEN i %% 3 = 0 THEN p.fr[(1 + (i * 104729) %% %d)::int] ELSE p.mr[(1 + (i * 104729) %% %d)::int] END
         || '.' || p.sr[(1 + (i * 7919) %% %d)::int] || '.' || i || '@' || p.dom[(1 + (i * 31) %% %d)::int],
       p.inst[(1 + (i * 613) %% %d)::int],
       p.addr[(1 + (i * 613) %% %d)::int],
       p.title[(1 + (i * 37) %% %d)::int],
       p.job[(1 + (i * 53) %% %d)::int],
       p.dept[(1 + (i * 71) %% %d)::int],
       timestamptz '2024-01-01 09:00:00+09' + ((i * 7841) %% 15552000) * interval '1 second'
FROM generate_series(1::bigint, %d) AS i, p`,
		arr(field(surnames, k)), arr(field(surnames, kana)), arr(field(surnames, rom)),
		arr(field(maleGiven, k)), arr(field(maleGiven, kana)), arr(field(maleGiven, rom)),
		arr(field(femaleGiven, k)), arr(field(femaleGiven, kana)), arr(field(femaleGiven, rom)),
		arr(insts), arr(addrs), arr(titles), arr(jobTypes), arr(departments), arr(domains),
		len(surnames), len(femaleGiven), len(maleGiven),
		len(surnames), len(femaleGiven), len(maleGiven),
		len(femaleGiven), len(maleGiven), len(surnames), len(domains),
		len(insts), len(addrs), len(titles), len(jobTypes), len(departments),
		n)
}

// CasesInsert returns the statement that fills cases with ids 1..n.
func CasesInsert(n int) string {
	var insts []string
	for i := 0; i < 300; i++ {
		insts = append(insts, places[i%len(places)]+instKinds[(i/len(places))%len(instKinds)])
	}
	return fmt.Sprintf(`
WITH p AS (SELECT %s AS reg, %s AS dx, %s AS st, %s AS tx, %s AS inst)
INSERT INTO cases
SELECT i,
       p.reg[CASE WHEN i %% 19 = 0 THEN 1 ELSE 2 END],
       p.dx[(1 + (i * 7919) %% %d)::int],
       p.st[(1 + (i * 104729) %% %d)::int],
       p.tx[(1 + (i * 31) %% %d)::int],
       p.inst[(1 + (i * 613) %% %d)::int],
       date '2005-04-01' + ((i * 7907) %% 6900)::int
FROM generate_series(1::bigint, %d) AS i, p`,
		arr(registries), arr(diagnoses), arr(stages), arr(treatments), arr(insts),
		len(diagnoses), len(stages), len(treatments), len(insts), n)
}

// Load creates and fills the demo tables on conn; a table with no rows
// asked for is not created.
func Load(ctx context.Context, conn *pgconn.PgConn, hcpRows, caseRows int) error {
	var steps []struct{ name, sql string }
	if hcpRows > 0 {
		steps = append(steps, struct{ name, sql string }{"hcp", HCPSchema + HCPInsert(hcpRows) + "; ANALYZE hcp"})
	}
	if caseRows > 0 {
		steps = append(steps, struct{ name, sql string }{"cases", CasesSchema + CasesInsert(caseRows) + "; ANALYZE cases"})
	}
	for _, step := range steps {
		if _, err := conn.Exec(ctx, step.sql).ReadAll(); err != nil {
			return fmt.Errorf("demo data %s: %w", step.name, err)
		}
	}
	return nil
}
