// The CPU's f32 FMA peak, 1 and 2 threads: gcc -O2 -mavx512f -mfma scripts/bench/fma_peak.c -o /tmp/fma_peak -lpthread && /tmp/fma_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define N 12
void* run(void* arg){
  long iters=*(long*)arg;
  __m512 a[N]; __m512 b=_mm512_set1_ps(1.0000001f), c=_mm512_set1_ps(1e-7f);
  for(int i=0;i<N;i++)a[i]=_mm512_set1_ps(i);
  for(long it=0;it<iters;it++){
    #pragma GCC unroll 12
    for(int i=0;i<N;i++)a[i]=_mm512_fmadd_ps(a[i],b,c);
  }
  float s=0; for(int i=0;i<N;i++){float t[16];_mm512_storeu_ps(t,a[i]);s+=t[0];}
  static volatile float sink; sink=s; return 0;
}
int main(){
  long iters=200000000;
  for(int th=1;th<=2;th++){
    pthread_t p[2]; double t0=now();
    for(int i=0;i<th;i++)pthread_create(&p[i],0,run,&iters);
    for(int i=0;i<th;i++)pthread_join(p[i],0);
    double dt=now()-t0;
    printf("threads %d: %.1f GFLOP/s\n",th, th*(double)iters*N*16*2/dt/1e9);
  }
}
