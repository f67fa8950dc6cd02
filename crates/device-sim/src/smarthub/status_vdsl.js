var serial_no = "%2B068341%2BNQ00000000";
var fw_ver = "v0%2E37%2E00%2E00000%2DBT%20%28Tue%20Mar%20%205%2010%3A11%3A12%202024%29";
var fw_update_time = '2024%2F03%2F19%2003%3A12%3A44';
var ip4_info_list = [['203%2E0%2E113%2E77%3B255%2E255%2E255%2E255%3B172%2E16%2E11%2E23%3B81%2E139%2E56%2E100%3B81%2E139%2E57%2E100'],
null];
var wan_link_status_list = [['disconnected%3B0'],
['connected%3B71'],
['disconnected%3B0'],
null];
var wan_conn_status_list = [['disconnected%3B0%3Bpass'],
['connected%3B96%3Bpass'],
['disconnected%3B0%3Bpass'],
null];
var wan_link_rate_list = [['0%3B0%3B0%3B0'],
['19999000%3B79987000%3B0%3B0'],
['0%3B0%3B0%3B0'],
null];
var wan_linestatus_rate_list = [['UP', 'VDSL2', 'Profile%2017a', '62', '71', '153', '91', '137', '90', '127', '68', '79987', '19999', '84312000', '24801000', 'fast'],
null];
var link_status = 'connected%3Bvdsl%3B71';
var linestatus = [{
    state: 'UP',
    mode: 'VDSL2',
    mod_type: 'Profile%2017a',
    snr_margin_down: '62',
    snr_margin_up: '71',
    latn_down: '153',
    latn_up: '91',
    satn_down: '137',
    satn_up: '90',
    output_power_down: '127',
    output_power_up: '68',
    rate_down: '79987',
    rate_up: '19999',
    attainable_rate_down: '84312000',
    attainable_rate_up: '24801000',
    chantype: 'fast'
},
null];
//bt wifi
var openwifi_suppressed = parseInt("0") && parseInt("1");
var openwifi_enable = parseInt("1") || parseInt("1");
var sysuptime = '1209733';
//lan ip
var lan_service_ip = "192%2E168%2E1%2E254";
