//! The interactive 3-D view: a `<canvas>` per projection, its points as JSON in the page, and a small
//! hand-written script (drag to rotate, arrow keys too, hover for sample id and hue). Nothing is fetched:
//! the page stays one file that opens from disk.

use super::table::esc;

/// One point cloud.
pub struct View3d {
    /// Element id stem; made by the report from set positions, never from untrusted names.
    pub id: String,
    pub title: String,
    pub axes: [String; 3],
    /// (coordinates, hue in degrees, sample id).
    pub points: Vec<([f64; 3], f64, String)>,
}

/// JSON for a `<script type="application/json">` block: `<`, `>` and `&` are written as `\u` escapes so no
/// string inside can close the script element.
fn script_json(v: &serde_json::Value) -> String {
    serde_json::to_string(v)
        .expect("plain JSON")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

impl View3d {
    pub fn render(&self) -> String {
        let points: Vec<serde_json::Value> = self
            .points
            .iter()
            .map(|(c, h, id)| {
                // Six significant digits are plenty for a screen and keep the page small.
                let r = |v: f64| {
                    if v.is_finite() {
                        serde_json::json!((v * 1e6).round() / 1e6)
                    } else {
                        serde_json::Value::Null
                    }
                };
                serde_json::json!([r(c[0]), r(c[1]), r(c[2]), r(*h), id])
            })
            .collect();
        let data = serde_json::json!({ "axes": self.axes, "p": points });
        format!(
            "<figure class=\"v3d\"><div class=\"v3dwrap\"><canvas class=\"view3d\" id=\"{id}\" width=\"640\" height=\"520\" \
             tabindex=\"0\" data-json=\"{id}-data\" data-tip=\"{id}-tip\" aria-label=\"{title}\"></canvas>\
             <div class=\"tip\" id=\"{id}-tip\" hidden></div></div><script type=\"application/json\" id=\"{id}-data\">{json}</script>\
             <figcaption>{title}. Drag (or arrow keys) to rotate, hover a point for its sample id and hue.</figcaption></figure>",
            id = esc(&self.id),
            title = esc(&self.title),
            json = script_json(&data),
        )
    }
}

/// The script that draws every `canvas.view3d` on the page and marks `<body data-views3d="k/n">` with how
/// many it drew (the headless-browser check reads it).
pub const SCRIPT: &str = r#"<script>
(function(){
function hueRgb(h){h=((h%360)+360)%360/60;var i=Math.floor(h)%6,f=h-Math.floor(h);
var c=[[1,f,0],[1-f,1,0],[0,1,f],[0,1-f,1],[f,0,1],[1,0,1-f]][i];
return 'rgb('+Math.round(c[0]*255)+','+Math.round(c[1]*255)+','+Math.round(c[2]*255)+')';}
function setup(cv){
var d=JSON.parse(document.getElementById(cv.getAttribute('data-json')).textContent);
var tip=document.getElementById(cv.getAttribute('data-tip'));
var P=d.p.filter(function(q){return q[0]!==null&&q[1]!==null&&q[2]!==null;});
var m=[0,0,0],s=1e-12,i,k;
for(i=0;i<P.length;i++){for(k=0;k<3;k++){m[k]+=P[i][k]/P.length;}}
for(i=0;i<P.length;i++){var r=0;for(k=0;k<3;k++){r+=(P[i][k]-m[k])*(P[i][k]-m[k]);}s=Math.max(s,Math.sqrt(r));}
var ctx=cv.getContext('2d'),W=cv.width,H=cv.height,yaw=0.6,pitch=0.35,drag=null,shown=[];
function pr(x,y,z){x-=m[0];y-=m[1];z-=m[2];var cy=Math.cos(yaw),sy=Math.sin(yaw),cp=Math.cos(pitch),sp=Math.sin(pitch);
var X=cy*x+sy*z,Z=-sy*x+cy*z,Y=cp*y-sp*Z,D=sp*y+cp*Z,f=0.4*Math.min(W,H)/s;return [W/2+f*X,H/2-f*Y,D];}
function draw(){ctx.fillStyle='#fff';ctx.fillRect(0,0,W,H);ctx.font='14px sans-serif';ctx.lineWidth=1;
for(k=0;k<3;k++){var e=[m[0],m[1],m[2]];e[k]+=s;var o=pr(m[0],m[1],m[2]),t=pr(e[0],e[1],e[2]);
ctx.strokeStyle='#999';ctx.beginPath();ctx.moveTo(o[0],o[1]);ctx.lineTo(t[0],t[1]);ctx.stroke();
ctx.fillStyle='#444';ctx.fillText(d.axes[k],t[0]+4,t[1]);}
shown=P.map(function(q){var r=pr(q[0],q[1],q[2]);return [r[0],r[1],r[2],q];});
shown.sort(function(a,b){return a[2]-b[2];});
for(i=0;i<shown.length;i++){var p=shown[i];ctx.beginPath();ctx.arc(p[0],p[1],5,0,6.2832);
ctx.fillStyle=p[3][3]===null?'#888':hueRgb(p[3][3]);ctx.fill();ctx.strokeStyle='rgba(0,0,0,0.45)';ctx.stroke();}}
function pos(ev){var b=cv.getBoundingClientRect();return [(ev.clientX-b.left)*W/b.width,(ev.clientY-b.top)*H/b.height];}
cv.addEventListener('mousedown',function(ev){drag=pos(ev);});
window.addEventListener('mouseup',function(){drag=null;});
cv.addEventListener('mousemove',function(ev){var q=pos(ev);
if(drag){yaw+=(q[0]-drag[0])*0.01;pitch=Math.max(-1.5,Math.min(1.5,pitch+(q[1]-drag[1])*0.01));drag=q;draw();return;}
var best=null,bd=64;for(i=0;i<shown.length;i++){var dx=shown[i][0]-q[0],dy=shown[i][1]-q[1];
if(dx*dx+dy*dy<=bd){bd=dx*dx+dy*dy;best=shown[i];}}
if(best){tip.hidden=false;tip.textContent=best[3][4]+' \u00b7 hue '+best[3][3]+'\u00b0';
tip.style.left=(best[0]*cv.clientWidth/W+12)+'px';tip.style.top=(best[1]*cv.clientHeight/H-8)+'px';}else{tip.hidden=true;}});
cv.addEventListener('mouseleave',function(){tip.hidden=true;});
cv.addEventListener('keydown',function(ev){var a={ArrowLeft:[-0.1,0],ArrowRight:[0.1,0],ArrowUp:[0,-0.1],ArrowDown:[0,0.1]}[ev.key];
if(a){yaw+=a[0];pitch=Math.max(-1.5,Math.min(1.5,pitch+a[1]));draw();ev.preventDefault();}});
draw();cv.setAttribute('data-rendered',String(shown.length));}
window.addEventListener('load',function(){var cs=document.querySelectorAll('canvas.view3d'),ok=0;
for(var j=0;j<cs.length;j++){try{setup(cs[j]);ok++;}catch(e){console.error('3-D view '+cs[j].id+': '+e);}}
document.body.setAttribute('data-views3d',ok+'/'+cs.length);});
})();
</script>"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_sample_id_cannot_close_the_script() {
        let v = View3d {
            id: "s0-smds".into(),
            title: "<img onerror=x>".into(),
            axes: ["a".into(), "b".into(), "c".into()],
            points: vec![([0.0, 1.0, f64::NAN], 30.0, "</script><script>alert(1)</script>".into())],
        };
        let html = v.render();
        assert!(!html.contains("</script><script>") && html.contains("\\u003c/script\\u003e"));
        assert!(!html.contains("<img") && html.contains("&lt;img onerror=x&gt;"));
        assert!(html.contains("[0.0,1.0,null,30.0,"));
    }
}
