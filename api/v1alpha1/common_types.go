package v1alpha1

// ObjectReference names another cluster-scoped custos object.
type ObjectReference struct {
	// name of the referenced object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// SecretReference names a Secret in the namespace the custos manager runs in. Secrets of other namespaces cannot be
// referenced: a cluster-scoped object must not become a way to read any Secret in the cluster through the operator.
type SecretReference struct {
	// name of the Secret in the manager's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`
}

// Jurisdiction is the ISO 3166-1 alpha-2 code of the country whose law governs where data is stored or processed,
// for example NL or DE. custos compares it with a RetentionPolicy's allowedJurisdictions before it stores anything.
// +kubebuilder:validation:Enum=AD;AE;AF;AG;AI;AL;AM;AO;AQ;AR;AS;AT;AU;AW;AX;AZ;BA;BB;BD;BE;BF;BG;BH;BI;BJ;BL;BM;BN;BO;BQ;BR;BS;BT;BV;BW;BY;BZ;CA;CC;CD;CF;CG;CH;CI;CK;CL;CM;CN;CO;CR;CU;CV;CW;CX;CY;CZ;DE;DJ;DK;DM;DO;DZ;EC;EE;EG;EH;ER;ES;ET;FI;FJ;FK;FM;FO;FR;GA;GB;GD;GE;GF;GG;GH;GI;GL;GM;GN;GP;GQ;GR;GS;GT;GU;GW;GY;HK;HM;HN;HR;HT;HU;ID;IE;IL;IM;IN;IO;IQ;IR;IS;IT;JE;JM;JO;JP;KE;KG;KH;KI;KM;KN;KP;KR;KW;KY;KZ;LA;LB;LC;LI;LK;LR;LS;LT;LU;LV;LY;MA;MC;MD;ME;MF;MG;MH;MK;ML;MM;MN;MO;MP;MQ;MR;MS;MT;MU;MV;MW;MX;MY;MZ;NA;NC;NE;NF;NG;NI;NL;NO;NP;NR;NU;NZ;OM;PA;PE;PF;PG;PH;PK;PL;PM;PN;PR;PS;PT;PW;PY;QA;RE;RO;RS;RU;RW;SA;SB;SC;SD;SE;SG;SH;SI;SJ;SK;SL;SM;SN;SO;SR;SS;ST;SV;SX;SY;SZ;TC;TD;TF;TG;TH;TJ;TK;TL;TM;TN;TO;TR;TT;TV;TW;TZ;UA;UG;UM;US;UY;UZ;VA;VC;VE;VG;VI;VN;VU;WF;WS;YE;YT;ZA;ZM;ZW
type Jurisdiction string

// JurisdictionSelector admits a jurisdiction: an ISO 3166-1 alpha-2 country code, or one of the groups "EEA" (the 27
// EU member states plus Iceland, Liechtenstein and Norway) and "EU" (the 27 member states).
// +kubebuilder:validation:Enum=EEA;EU;AD;AE;AF;AG;AI;AL;AM;AO;AQ;AR;AS;AT;AU;AW;AX;AZ;BA;BB;BD;BE;BF;BG;BH;BI;BJ;BL;BM;BN;BO;BQ;BR;BS;BT;BV;BW;BY;BZ;CA;CC;CD;CF;CG;CH;CI;CK;CL;CM;CN;CO;CR;CU;CV;CW;CX;CY;CZ;DE;DJ;DK;DM;DO;DZ;EC;EE;EG;EH;ER;ES;ET;FI;FJ;FK;FM;FO;FR;GA;GB;GD;GE;GF;GG;GH;GI;GL;GM;GN;GP;GQ;GR;GS;GT;GU;GW;GY;HK;HM;HN;HR;HT;HU;ID;IE;IL;IM;IN;IO;IQ;IR;IS;IT;JE;JM;JO;JP;KE;KG;KH;KI;KM;KN;KP;KR;KW;KY;KZ;LA;LB;LC;LI;LK;LR;LS;LT;LU;LV;LY;MA;MC;MD;ME;MF;MG;MH;MK;ML;MM;MN;MO;MP;MQ;MR;MS;MT;MU;MV;MW;MX;MY;MZ;NA;NC;NE;NF;NG;NI;NL;NO;NP;NR;NU;NZ;OM;PA;PE;PF;PG;PH;PK;PL;PM;PN;PR;PS;PT;PW;PY;QA;RE;RO;RS;RU;RW;SA;SB;SC;SD;SE;SG;SH;SI;SJ;SK;SL;SM;SN;SO;SR;SS;ST;SV;SX;SY;SZ;TC;TD;TF;TG;TH;TJ;TK;TL;TM;TN;TO;TR;TT;TV;TW;TZ;UA;UG;UM;US;UY;UZ;VA;VC;VE;VG;VI;VN;VU;WF;WS;YE;YT;ZA;ZM;ZW
type JurisdictionSelector string

// Duration is a positive length of time written as days, hours, minutes and seconds, largest unit first, each at
// most once: "90d", "30d", "240h", "1d12h", "90m". Months and years are deliberately not accepted: their length
// varies, and a retention promise must mean the same number of seconds to the operator, the auditor and restic.
// At most 106751d (the longest span Go's time.Duration holds); Parse refuses more, so schema and controller agree.
// +kubebuilder:validation:MinLength=2
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$')",message="must be a duration in days, hours, minutes and seconds, largest unit first, such as 90d, 240h or 1d12h (months and years are not accepted)"
// +kubebuilder:validation:XValidation:rule="self.matches('[1-9]')",message="must be longer than zero"
// +kubebuilder:validation:XValidation:rule="!self.matches('[0-9]{12}') && (self.matches('[0-9]+d') ? int(self.find('[0-9]+d').find('[0-9]+')) * 86400 : 0) + (self.matches('[0-9]+h') ? int(self.find('[0-9]+h').find('[0-9]+')) * 3600 : 0) + (self.matches('[0-9]+m') ? int(self.find('[0-9]+m').find('[0-9]+')) * 60 : 0) + (self.matches('[0-9]+s') ? int(self.find('[0-9]+s').find('[0-9]+')) : 0) <= 9223372036",message="must be at most 106751d (about 292 years): a longer duration cannot be represented"
type Duration string

// GraceDuration is a Duration of at least one hour with a non-zero day or hour part ("72h", "3d", "1d12h"), or
// exactly "0s" (no grace period).
// +kubebuilder:validation:MinLength=2
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self == '0s' || self.matches('^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$')",message="must be a duration in days, hours, minutes and seconds, largest unit first, such as 72h or 3d, or 0s"
// +kubebuilder:validation:XValidation:rule="self == '0s' || self.matches('[0-9]*[1-9][0-9]*[dh]')",message="a grace period must be at least 1h, written with a day or hour part such as 72h or 3d (a grace period of minutes gives nobody time to notice a wrong contract.end); 0s turns the safeguard off"
type GraceDuration string

// Schedule says when a recurring job runs: a cron expression evaluated in a time zone, spread over a jitter window
// so that many tenants do not start at the same second.
// +kubebuilder:validation:XValidation:rule="!(has(self.cron) && self.cron == '@hourly' && has(self.jitter) && self.jitter.matches('[0-9]+[dh]'))",message="jitter must be shorter than an hour for an @hourly schedule"
type Schedule struct {
	// cron is a standard five-field cron expression (minute hour day-of-month month day-of-week; numbers, ranges,
	// steps, lists and *) or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually.
	// Field ranges (minute 0-59, hour 0-23, …) are checked by the controller, which reports a ScheduleInvalid
	// condition; the schema checks the shape.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^@(hourly|daily|midnight|weekly|monthly|yearly|annually)$') || self.matches('^([0-9*,/-]+ +){4}[0-9*,/-]+$')",message="must be a five-field cron expression such as '30 2 * * *' (numbers, *, ranges a-b, steps /n and lists a,b only) or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly"
	// +kubebuilder:default="@daily"
	// +optional
	Cron string `json:"cron,omitempty"`

	// jitter spreads each tenant's run deterministically over this window after the cron time: the same tenant
	// always gets the same offset, different tenants get different ones. Empty means no jitter.
	// +optional
	Jitter Duration `json:"jitter,omitempty"`

	// timeZone is the IANA time zone the cron expression is read in, such as Europe/Amsterdam. Daylight-saving
	// changes are handled: a daily run happens once per calendar day. The controller reports an unknown zone.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^(UTC|[A-Za-z]+(/[A-Za-z0-9_+-]+){1,2})$`
	// +kubebuilder:default="UTC"
	// +optional
	TimeZone string `json:"timeZone,omitempty"`
}
